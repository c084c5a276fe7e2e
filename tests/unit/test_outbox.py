"""The per-session outbox: order kept, nothing lost through an outage within its bound, a clear limit."""

from __future__ import annotations

import asyncio

import pytest

from gateway import outbox as outbox_module
from gateway.outbox import Outbox, OutboxFull
from streams.errors import KafkaRejected, KafkaUnavailable, RecordTooLarge
from tests.waiting import wait_until


class FlakyKafka:
    """Stores what it is sent, in order; while ``down``, every send's delivery fails."""

    def __init__(self) -> None:
        self.down = False
        self.stored: list[int] = []
        self.sends = 0

    def sender(self, n: int):  # type: ignore[no-untyped-def]
        async def send() -> asyncio.Future[object]:
            self.sends += 1
            fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            if self.down:
                fut.set_exception(KafkaUnavailable("broker gone"))
            else:
                self.stored.append(n)
                fut.set_result(None)
            return fut

        return send


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outbox_module, "RETRY_S", 0.01)


async def test_an_outage_within_the_bound_loses_nothing_and_keeps_the_order() -> None:
    kafka = FlakyKafka()
    box = Outbox(limit_bytes=10_000, timeout_s=1.0, name="s")
    writer = asyncio.create_task(box.run())
    try:
        for n in range(5):
            await box.put_speech(kafka.sender(n), 100)
        await wait_until(lambda: box.empty, 5, "the outbox never emptied", 0.005)
        kafka.down = True
        for n in range(5, 50):
            await box.put_speech(kafka.sender(n), 100)
        await wait_until(lambda: box.stuck_since_s is not None, 5, "Kafka was never found away", 0.005)
        assert box.audio_bytes == 4500  # kept while Kafka is away
        kafka.down = False
        await wait_until(lambda: box.empty, 5, "the outbox never emptied", 0.005)
    finally:
        writer.cancel()
    assert kafka.stored == list(range(50)) and box.audio_bytes == 0 and box.stuck_since_s is None


async def test_past_the_bound_speech_is_refused_while_kafka_is_away_and_waits_while_it_is_slow() -> None:
    kafka = FlakyKafka()
    kafka.down = True
    box = Outbox(limit_bytes=1000, timeout_s=1.0)
    writer = asyncio.create_task(box.run())
    try:
        for n in range(10):
            await box.put_speech(kafka.sender(n), 100)
        await wait_until(lambda: box.stuck_since_s is not None, 5, "Kafka was never found away", 0.005)
        with pytest.raises(OutboxFull):
            await box.put_speech(kafka.sender(10), 100)
        box.put(kafka.sender(11))  # a record without speech (an END, a state) always fits
        kafka.down = False
        await wait_until(lambda: box.empty, 5, "the outbox never emptied", 0.005)
    finally:
        writer.cancel()
    assert kafka.stored == [*range(10), 11]
    slow = Outbox(limit_bytes=300, timeout_s=1.0)  # Kafka up but slower than the speech: back-pressure
    gates = [asyncio.get_running_loop().create_future() for _ in range(4)]

    def gated(k: int):  # type: ignore[no-untyped-def]
        async def send() -> asyncio.Future[object]:
            return gates[k]

        return send

    writer = asyncio.create_task(slow.run())
    try:
        for k in range(3):
            await slow.put_speech(gated(k), 100)
        fourth = asyncio.create_task(slow.put_speech(gated(3), 100))
        await asyncio.sleep(0.05)
        assert not fourth.done()  # waits for room, not refused
        gates[0].set_result(None)
        await asyncio.wait_for(fourth, 1)
        for gate in gates[1:]:
            gate.set_result(None)
        await wait_until(lambda: slow.empty, 5, "the outbox never emptied", 0.005)
    finally:
        writer.cancel()


async def test_a_durable_record_is_waited_for_and_nothing_after_it_goes_first() -> None:
    kafka = FlakyKafka()
    box = Outbox(limit_bytes=1000, timeout_s=1.0)
    gate = asyncio.get_running_loop().create_future()

    async def slow_state() -> asyncio.Future[object]:
        return gate  # stored when the test says so

    stored = box.put(slow_state, durable=True)
    await box.put_speech(kafka.sender(1), 10)
    writer = asyncio.create_task(box.run())
    try:
        await asyncio.sleep(0.05)
        assert stored is not None and not stored.done() and kafka.sends == 0  # the audio waits behind it
        gate.set_result(None)
        await asyncio.wait_for(stored, 1)
        await wait_until(lambda: box.empty, 5, "the outbox never emptied", 0.005)
    finally:
        writer.cancel()
    assert kafka.stored == [1]


async def test_a_slow_delivery_is_waited_for_not_sent_twice() -> None:
    box = Outbox(limit_bytes=1000, timeout_s=0.05)
    sends = 0
    gate = asyncio.get_running_loop().create_future()

    async def slow() -> asyncio.Future[object]:
        nonlocal sends
        sends += 1
        return gate

    await box.put_speech(slow, 10)
    writer = asyncio.create_task(box.run())
    try:
        await wait_until(
            lambda: box.stuck_since_s is not None, 5, "Kafka was never found away", 0.005
        )  # a timeout: Kafka is slow, or away
        await asyncio.sleep(0.2)  # several timeouts in a row
        gate.set_result(None)
        await wait_until(lambda: box.empty, 5, "the outbox never emptied", 0.005)
    finally:
        writer.cancel()
    assert sends == 1


async def test_a_write_kafka_refuses_for_good_ends_the_outbox_with_that_reason() -> None:
    """A record over the cap is not "Kafka away": it is never retried, whoever waits learns why."""
    kafka = FlakyKafka()
    box = Outbox(limit_bytes=10_000, timeout_s=1.0, name="s")

    async def too_large() -> asyncio.Future[object]:
        raise RecordTooLarge("the message is 5242880 bytes")

    await box.put_speech(kafka.sender(0), 100)
    box.put(too_large)
    await box.put_speech(kafka.sender(1), 100)  # behind the refused one: dropped with it
    stored = box.put(kafka.sender(2), durable=True)
    writer = asyncio.create_task(box.run())
    await asyncio.wait_for(writer, 5)  # the writer ends; it does not retry
    assert kafka.stored == [0] and box.empty and box.audio_bytes == 0 and box.stuck_since_s is None
    assert stored is not None
    with pytest.raises(RecordTooLarge, match="5242880"):
        await stored
    with pytest.raises(KafkaRejected):
        await box.put_speech(kafka.sender(3), 100)
    with pytest.raises(KafkaRejected):
        box.put(kafka.sender(4))
