"""Follow a whole topic without a consumer group: every gateway instance sees every partition.

Used by the gateway's results fan-out (from the end: only what is produced from now on) and by its session
store (from the start of the compacted topic). Each record is decoded, handed to ``on_record`` and never
allowed to stop the loop: an unreadable record, or one whose handling raises, goes to the dead-letter topic
(``streams.deadletter``) and the next one is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from schemas.codec import Codec
from streams.deadletter import DeadLetters, R
from streams.endpoint import Kafka, endpoint
from streams.topics import assign_all_partitions

log = logging.getLogger(__name__)


class TopicFollower(Generic[R]):
    def __init__(
        self,
        bootstrap: Kafka,
        topic: str,
        codec: Codec[R],
        on_record: Callable[[bytes | None, R | None], None],
        dead_letters: DeadLetters,
        *,
        from_start: bool,
        tombstones: bool = False,
        max_records: int = 500,
    ) -> None:
        """``on_record(key, record)``; ``record`` is None for a tombstone (only when ``tombstones``)."""
        self.topic = topic
        self.codec = codec
        self.on_record = on_record
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
        self._tps: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None
        self.running = False

    async def start(self, timeout_s: float = 30.0) -> None:
        await self._consumer.start()
        self._tps = await assign_all_partitions(self._consumer, self.topic, timeout_s)
        if self.from_start:
            await self._consumer.seek_to_beginning(*self._tps)
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
                for records in batch.values():
                    for rec in records:
                        await self._handle(rec)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following %s stopped", self.topic)
            self.running = False
            raise

    async def _handle(self, rec: ConsumerRecord[bytes, bytes]) -> None:
        record: R | None = None
        if not (self.tombstones and rec.value is None):
            record = await self.dead_letters.decode(self.codec, rec)
            if record is None:
                return
        try:
            self.on_record(rec.key, record)
        except Exception as e:
            log.exception("handling %s failed", self.topic)
            await self.dead_letters.send(rec, e, "handler_failed")

    async def wait_caught_up(self, timeout_s: float) -> None:
        """Return once every record in the topic as of this call has been handled."""
        ends = await self._consumer.end_offsets(self._tps)
        async with asyncio.timeout(timeout_s):
            while any([await self._consumer.position(tp) < end for tp, end in ends.items()]):
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.running = False
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
