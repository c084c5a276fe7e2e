"""Follow a whole topic without a consumer group: every gateway instance sees every partition.

Used by the gateway's results fan-out (from the end: only what is produced from now on) and by its session
store (from the start of the compacted topic). Each record is decoded, handed to ``on_record`` and never
allowed to stop the loop: an unreadable record, or one whose handling raises, goes to the dead-letter topic
(``streams.deadletter``) and the next one is read.

Replaying a compacted topic's history at start, an unreadable record is held back by partition and key:
a later record of the key in its partition (a newer state, a tombstone) supersedes it, and what is still
held once the follower has caught up is dead-lettered then. Every unreadable record dead-lettered (live
or from the history) that has a key is handed to ``on_unreadable`` with its partition (the session store
tombstones its session there), so a gateway's every restart does not dead-letter the same old records
again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas.codec import Codec, CodecError
from streams.deadletter import DeadLetters, Held, R
from streams.endpoint import Kafka, endpoint
from streams.topics import assign_all_partitions

log = logging.getLogger(__name__)


class TopicFollower(Generic[R]):
    def __init__(
        self,
        bootstrap: Kafka,
        topic: str,
        codec: Codec[R],
        on_record: Callable[[bytes | None, R | None, int], None],
        dead_letters: DeadLetters,
        *,
        from_start: bool,
        tombstones: bool = False,
        max_records: int = 500,
        on_unreadable: Callable[[bytes, int, CodecError], Awaitable[None]] | None = None,
    ) -> None:
        """``on_record(key, record, offset)``; ``record`` is None for a tombstone (only when ``tombstones``);
        ``on_unreadable(key, partition, error)``: an unreadable record, the key's last in its partition,
        was dead-lettered."""
        self.topic = topic
        self.codec: Codec[R] = codec
        self.on_record: Callable[[bytes | None, R | None, int], None] = on_record
        self.dead_letters = dead_letters
        self.from_start = from_start
        self.tombstones = tombstones
        self.max_records = max_records
        self._consumer = AIOKafkaConsumer(
            **endpoint(bootstrap).client_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_start else "latest",
        )
        self.on_unreadable = on_unreadable
        self._tps: list[TopicPartition] = []
        self._history: dict[TopicPartition, int] = {}  # end offsets at start, while replaying up to them
        self._held: Held = {}
        self._task: asyncio.Task[None] | None = None
        self._handling = False  # a fetched batch is being handled: the positions are already past it
        self.running = False

    async def start(self, timeout_s: float = 30.0) -> None:
        await self._consumer.start()
        self._tps = await assign_all_partitions(self._consumer, self.topic, timeout_s)
        if self.from_start:
            await self._consumer.seek_to_beginning(*self._tps)
            ends = await self._consumer.end_offsets(self._tps)
            self._history = {tp: end for tp, end in ends.items() if end > 0}
        else:
            await self._consumer.seek_to_end(*self._tps)
            for tp in self._tps:  # resolve positions now, so nothing produced after start() is skipped
                await self._consumer.position(tp)
        self.running = True
        self._task = asyncio.create_task(self._run(), name=f"follow-{self.topic}")

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=self.max_records)
                self._handling = True
                for records in batch.values():
                    for rec in records:
                        await self._handle(rec)
                self._handling = False
                if self._history:
                    await self._replayed()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following %s stopped", self.topic)
            self.running = False
            raise

    async def _handle(self, rec: ConsumerRecord[bytes, bytes]) -> None:
        record: R | None = None
        replaying = rec.offset < self._history.get(TopicPartition(rec.topic, rec.partition), 0)
        if replaying and rec.key is not None:
            self._held.pop((rec.partition, rec.key), None)  # superseded by this one (in its partition)
        if not (self.tombstones and rec.value is None):
            held: Held = self._held if replaying else {}
            record = await self.dead_letters.decode(self.codec, rec, held)
            if record is None:
                if not replaying:
                    await self._unreadable(held)
                return
        try:
            self.on_record(rec.key, record, rec.offset)
        except Exception as e:
            log.exception("handling %s failed", self.topic)
            await self.dead_letters.send(rec, e, "handler_failed")

    async def _replayed(self) -> None:
        """Once the history is read: dead-letter the unreadable records that were their key's last."""
        for tp, end in list(self._history.items()):
            if await self._consumer.position(tp) >= end:
                del self._history[tp]
        if self._history:
            return
        held, self._held = self._held, {}
        await self._unreadable(held)

    async def _unreadable(self, held: Held) -> None:
        for (partition, key), (rec, error) in held.items():
            await self.dead_letters.send(rec, error, "undecodable")
            if self.on_unreadable is not None:
                await self.on_unreadable(key, partition, error)

    async def wait_caught_up(self, timeout_s: float) -> None:
        """Return once every record in the topic as of this call has been handled. A consumer's position
        moves past a batch when it is fetched, so the batch being handled (one record of it awaiting the
        dead-letter topic, say) is waited for too: a record fetched with it is not yet known."""
        ends = await self._consumer.end_offsets(self._tps)
        async with asyncio.timeout(timeout_s):
            while self._handling or any([await self._consumer.position(tp) < end for tp, end in ends.items()]):
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.running = False
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
