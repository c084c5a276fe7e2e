"""Hostile records in every topic: each goes to the dead-letter topic with where it came from, is skipped,
and delivery goes on for everyone else (real broker, real gateway and workers, real speech)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from websockets.asyncio.client import connect

from babelstream.client import stream_audio
from babelstream.settings import load_settings
from schemas.records import AudioEvent, AudioEventKind, Result, ResultKind, SessionState
from streams.topics import Codecs, Topics, partition_ids, topic_specs
from tests.audio import librivox, wer
from tests.stack import Stack, http_json

pytestmark = pytest.mark.timeout(240)

Dead = dict[str, str]


def contract(stack: Stack) -> tuple[Topics, Codecs]:
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix, results_partitions=2)
    topics = topic_specs(s)
    return topics, Codecs.create(s, topics)


async def produce_everywhere(bootstrap: str, topic: str, key: bytes, values: list[bytes | None]) -> None:
    """Each value into every partition of ``topic``, so whatever partition a live session uses holds it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for p in await partition_ids(bootstrap, topic):
            for v in values:
                await producer.send_and_wait(topic, v, key=key, partition=p)
    finally:
        await producer.stop()


async def wait_dead_letters(
    bootstrap: str, dlq: str, want: Callable[[list[Dead]], bool], timeout_s: float
) -> list[Dead]:
    consumer = AIOKafkaConsumer(dlq, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    seen: list[Dead] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not want(seen):
                for recs in (await consumer.getmany(timeout_ms=300)).values():
                    seen += [{k: v.decode() for k, v in r.headers} for r in recs]
    except TimeoutError:
        raise AssertionError(f"dead letters never arrived; seen {seen}") from None
    finally:
        await consumer.stop()
    return seen


def bad_values(good: bytes) -> list[bytes | None]:
    return [None, b"", b"\x00\x00\x00\x03\xe7" + good[5:], b"\x00" + good[1:5] + b"\xff" * 7]


async def test_poison_results_do_not_stop_delivery(stack: Stack) -> None:
    topics, codecs = contract(stack)
    good = codecs.result.encode(Result("poison", 0, ResultKind.FINAL, "x"))
    key = f"poison-{uuid.uuid4().hex[:6]}".encode()
    await produce_everywhere(stack.bootstrap, topics.results.name, key, bad_values(good))
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    rep = await stream_audio(stack.ws_url, pcm, pace=0, timeout_s=90, source_lang="en")
    assert wer(ref, rep.text) < 0.2
    status, body = await asyncio.to_thread(http_json, stack.services[0].health_url)
    assert status == 200 and body["status"] == "ok", body
    n = 4 * len(await partition_ids(stack.bootstrap, topics.results.name))

    def from_results(stage: str) -> Callable[[list[Dead]], bool]:
        return lambda seen: (
            sum(
                d["__connect.errors.topic"] == topics.results.name and d["babelstream.errors.stage"] == stage
                for d in seen
            )
            >= n
        )

    dead = await wait_dead_letters(stack.bootstrap, topics.dlq.name, from_results("gateway"), 30)
    await wait_dead_letters(stack.bootstrap, topics.dlq.name, from_results("translate"), 30)
    mine = [d for d in dead if d["babelstream.errors.stage"] == "gateway"]
    assert all(d["__connect.errors.exception.message"] and d["__connect.errors.offset"].isdigit() for d in mine)


async def test_poison_audio_does_not_wedge_a_partition(stack: Stack) -> None:
    topics, codecs = contract(stack)
    ok = AudioEvent("p", 0, 0, AudioEventKind.CHUNK, b"\x00\x01", 0)
    invalid = [
        codecs.audio.encode(AudioEvent("p", 0, 0, AudioEventKind.CHUNK, b"\x00\x01", 0, sample_rate_hz=0)),
        codecs.audio.encode(AudioEvent("p", 0, 0, AudioEventKind.CHUNK, b"\x00\x01\x02", 0)),  # odd-length PCM
    ]
    key = f"poison-{uuid.uuid4().hex[:6]}".encode()
    values = bad_values(codecs.audio.encode(ok)) + invalid
    await produce_everywhere(stack.bootstrap, topics.audio.name, key, values)
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
    for _ in range(2):  # two sessions: likely two partitions, each behind poison
        rep = await stream_audio(stack.ws_url, pcm, pace=0, timeout_s=120, source_lang="en")
        assert wer(ref, rep.text) < 0.2, rep.text
    n = len(values) * len(await partition_ids(stack.bootstrap, topics.audio.name))
    dead = await wait_dead_letters(
        stack.bootstrap,
        topics.dlq.name,
        lambda seen: sum(d["babelstream.errors.stage"] == "stt" for d in seen) >= n,
        60,
    )
    reasons = {d["__connect.errors.exception.message"] for d in dead if d["babelstream.errors.stage"] == "stt"}
    assert any("sample_rate_hz=0" in r for r in reasons) and any("whole number of samples" in r for r in reasons)


async def test_poison_session_state_does_not_stop_resume(stack: Stack) -> None:
    topics, codecs = contract(stack)
    good = codecs.session.encode(SessionState("ps", "gw", 16000, 0))
    key = f"ps-{uuid.uuid4().hex[:8]}".encode()
    await produce_everywhere(stack.bootstrap, topics.sessions.name, key, bad_values(good)[1:])
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "source_lang": "en"}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 15))
    assert ready["type"] == "ready" and ready["resumed"] is False
    resume = {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
    async with connect(stack.ws_url) as ws:  # the store keeps following: the state just written is seen
        await ws.send(json.dumps(resume))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 15))
    assert ready["type"] == "ready" and ready["resumed"] is True and ready["source_lang"] == "en"
