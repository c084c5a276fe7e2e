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
from core.settings import load_settings
from schemas.records import AudioEvent, AudioEventKind, Result, ResultKind, SessionState
from streams.topics import Codecs, Topics, partition_ids, topic_specs
from tests.audio import librivox, wer
from tests.stack import Service, Stack, http_json, http_text

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
    assert ready["type"] == "ready" and ready["resumed"] is True and ready["source_lang"] == "en", ready


async def dead_letters_of(svc: Service, topic: str) -> float:
    """babelstream_dead_letters_total of ``topic`` in one service's /metrics."""
    exposition = await asyncio.to_thread(http_text, svc.base_url + "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("babelstream_dead_letters_total{") and f'topic="{topic}"' in line
    )


async def test_absurd_records_are_dead_lettered_once_not_on_every_gateway_start(stack: Stack) -> None:
    """Decodable but absurd records (negative indexes, channels=0, encoding=mp3) are dead-lettered like
    undecodable ones; an unreadable session state is dead-lettered once, by the gateways that follow the
    topic when it arrives, and tombstoned, so a gateway started later does not dead-letter it again."""
    topics, codecs = contract(stack)
    tag = uuid.uuid4().hex[:8]
    absurd_results = [
        codecs.result.encode(Result(f"r-{tag}", -1, ResultKind.FINAL, "x")),
        codecs.result.encode(Result(f"r-{tag}", 0, ResultKind.FINAL, "x", audio_start_ms=900, audio_end_ms=100)),
        codecs.result.encode(Result(f"r-{tag}", 0, ResultKind.ERROR)),  # an error that says nothing
    ]
    await produce_everywhere(stack.bootstrap, topics.results.name, f"r-{tag}".encode(), absurd_results)
    good = SessionState(f"s-{tag}", "gw", 16000, 0)
    absurd_states = [
        codecs.session.encode(SessionState(f"s-{tag}", "gw", 16000, 0, channels=0)),
        codecs.session.encode(SessionState(f"s-{tag}", "gw", 16000, 0, encoding="mp3")),
        codecs.session.encode(SessionState(f"s-{tag}", "gw", 16000, -3)),
    ]
    key = f"s-{tag}".encode()
    await produce_everywhere(stack.bootstrap, topics.sessions.name, key, [codecs.session.encode(good), *absurd_states])
    parts = len(await partition_ids(stack.bootstrap, topics.sessions.name))

    def said(seen: list[Dead], topic: str, words: str) -> int:
        return sum(
            d["__connect.errors.topic"] == topic and words in d["__connect.errors.exception.message"] for d in seen
        )

    dead = await wait_dead_letters(
        stack.bootstrap,
        topics.dlq.name,
        lambda seen: (
            said(seen, topics.sessions.name, "next_utterance_index=-3") >= parts
            and said(seen, topics.results.name, "without its error") >= parts
        ),
        30,
    )
    messages = {d["__connect.errors.exception.message"] for d in dead}
    for said in (
        "channels=0",
        "encoding='mp3'",
        "next_utterance_index=-3",
        "before audio_start_ms",
        "without its error",
    ):
        assert any(said in m for m in messages), (said, messages)
    # a gateway started now replays the sessions topic's history: the absurd states are behind a tombstone
    gw = stack.start_gateway()
    try:
        await asyncio.to_thread(stack.wait_healthy, [gw])
        # unreadable records written after it started, twice: it dead-letters them live, and by the second
        # it has certainly finished its replay of the history (and dead-lettered whatever that held)
        for round_ in (1, 2):
            await produce_everywhere(stack.bootstrap, topics.sessions.name, f"z{round_}-{tag}".encode(), [b"\x00" * 7])
            async with asyncio.timeout(30):
                while (seen := await dead_letters_of(gw, topics.sessions.name)) < round_ * parts:
                    await asyncio.sleep(0.2)
        assert seen == 2 * parts, f"the new gateway dead-lettered {seen - 2 * parts} old session records again"
    finally:
        await asyncio.to_thread(stack.retire, gw)
