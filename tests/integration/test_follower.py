"""A topic follower's "caught up" means handled, not just fetched (real broker)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from babelstream.settings import Settings
from schemas.records import SessionState
from streams.deadletter import DeadLetters
from streams.follower import TopicFollower
from streams.topics import Codecs, topic_specs

pytestmark = pytest.mark.timeout(60)


async def test_caught_up_waits_for_a_record_fetched_behind_one_being_dead_lettered(settings: Settings) -> None:
    """A good record fetched in the same batch as a bad one is not yet handled while the bad one is on its
    way to the dead-letter topic; a resume asking the session store then must not find its session
    missing (it was: ``unknown_session`` for a session just started, under load)."""
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    topic = topics.sessions.name
    seen: dict[bytes, SessionState | None] = {}

    async def slow_dead_letter_topic(key: bytes | None, value: bytes | None, headers: object) -> None:
        await asyncio.sleep(1.5)

    follower = TopicFollower(
        settings.bootstrap,
        topic,
        codecs.session,
        lambda key, state: seen.__setitem__(key or b"", state),
        DeadLetters("test", slow_dead_letter_topic),
        from_start=False,
        tombstones=True,
    )
    await follower.start()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=50)
    await producer.start()
    try:
        good = codecs.session.encode(SessionState("good", "gw", 16000, 0))
        sent = [
            await producer.send(topic, b"\x00not avro", key=b"bad", partition=0),
            await producer.send(topic, good, key=b"good", partition=0),
        ]
        await asyncio.gather(*sent)
        await follower.wait_caught_up(10)
        assert b"good" in seen, "caught up before the record fetched behind the bad one was handled"
    finally:
        await producer.stop()
        await follower.stop()
