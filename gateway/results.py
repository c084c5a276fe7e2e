"""Fan-out of the results topic to WebSocket clients.

Every gateway instance reads all partitions of the results topic (no consumer group, from the end at
start-up) and hands each result to the connection that owns its session, if that connection is here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from streams.codec import CodecError
from streams.records import Result
from streams.topics import Codecs, assign_all_partitions

log = logging.getLogger(__name__)


class ResultRouter:
    def __init__(self, bootstrap: str, topic: str, codecs: Codecs, deliver: Callable[[Result], None]) -> None:
        self.topic = topic
        self.codecs = codecs
        self.deliver = deliver
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="latest"
        )
        self._task: asyncio.Task[None] | None = None
        self.running = False

    async def start(self, timeout_s: float = 30.0) -> None:
        await self._consumer.start()
        tps = await assign_all_partitions(self._consumer, self.topic, timeout_s)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve positions now, so nothing produced after start() is skipped
            await self._consumer.position(tp)
        self.running = True
        self._task = asyncio.create_task(self._run(), name="result-router")

    async def _run(self) -> None:
        try:
            while True:
                batch = await self._consumer.getmany(timeout_ms=200, max_records=500)
                for records in batch.values():
                    for rec in records:
                        try:
                            result = self.codecs.result.decode(rec.value)
                        except CodecError as e:
                            log.warning("undecodable result at %s:%s: %s", rec.partition, rec.offset, e)
                            continue
                        self.deliver(result)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("result router stopped")
            self.running = False
            raise

    async def stop(self) -> None:
        self.running = False
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
