"""A topic follower's "caught up" means handled, not just fetched (real broker)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from core.settings import Settings
from gateway.store import SessionStore
from schemas.records import SessionState
from streams.deadletter import DeadLetters
from streams.follower import TopicFollower
from streams.producer import EventProducer
from streams.topics import Codecs, partition_ids, topic_specs
from tests.waiting import wait_until

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
        lambda key, state, offset: seen.__setitem__(key or b"", state),
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


async def test_an_unreadable_state_off_its_keys_partition_is_tombstoned_where_it_lies(settings: Settings) -> None:
    """Unreadable states of one key in two partitions (a writer that chose partitions itself): each is
    dead-lettered once and tombstoned in its own partition, so a store that replays the topic later meets
    none again (a tombstone in the key's own partition alone left the other one for every restart)."""
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    topic = topics.sessions.name
    producer = EventProducer(settings.bootstrap, topics, codecs)
    await producer.start()
    dead: list[int] = []

    async def dead_letter_topic(key: bytes | None, value: bytes | None, headers: object) -> None:
        dead.append(1)

    raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await raw.start()
    try:
        for partition in await partition_ids(settings.bootstrap, topic):
            await raw.send_and_wait(topic, b"\x07not avro", key=b"both", partition=partition)
        first = SessionStore(
            settings.bootstrap, topic, codecs, DeadLetters("first", dead_letter_topic), delete=producer.delete_session
        )
        await first.start()
        await wait_until(lambda: len(dead) >= 2, 20, "the two unreadable states were never dead-lettered")
        await first.stop()
        await producer.flush()
        dead.clear()
        later = SessionStore(
            settings.bootstrap, topic, codecs, DeadLetters("later", dead_letter_topic), delete=producer.delete_session
        )
        await later.start()
        await later.get("anything", 10)
        # one more unreadable state, live: once it is dead-lettered the replay of the history is over
        await raw.send_and_wait(topic, b"\x07new", key=b"fresh", partition=0)
        await wait_until(lambda: dead, 20, "the live unreadable state was never dead-lettered")
        await asyncio.sleep(0.5)
        await later.stop()
        assert len(dead) == 1, f"a later store dead-lettered {len(dead) - 1} old states again"
    finally:
        await raw.stop()
        await producer.stop()
