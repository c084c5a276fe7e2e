"""Session state shared by all gateway instances through the compacted sessions topic.

Each gateway reads the whole topic into memory and keeps following it, so a client reconnecting to any
instance resumes with its languages and utterance counter. :meth:`SessionStore.get` first waits until the
local copy has caught up with the topic's end as of the call, so a state written a moment ago by another
instance is seen.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.codec import CodecError
from streams.records import SessionState
from streams.topics import Codecs, assign_all_partitions

log = logging.getLogger(__name__)


class SessionStore:
    def __init__(self, bootstrap: str, topic: str, codecs: Codecs) -> None:
        self.topic = topic
        self.codecs = codecs
        self.states: dict[str, SessionState] = {}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self._tps: list[TopicPartition] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        await self._consumer.start()
        self._tps = await assign_all_partitions(self._consumer, self.topic, timeout_s)
        await self._consumer.seek_to_beginning(*self._tps)
        self._task = asyncio.create_task(self._run(), name="session-store")

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            for records in batch.values():
                for rec in records:
                    sid = rec.key.decode(errors="replace") if rec.key else ""
                    if rec.value is None:
                        self.states.pop(sid, None)  # tombstone
                        continue
                    try:
                        self.states[sid] = self.codecs.session.decode(rec.value)
                    except CodecError as e:
                        log.warning("undecodable session state for %r: %s", sid, e)

    async def get(self, session_id: str, timeout_s: float = 10.0) -> SessionState | None:
        ends = await self._consumer.end_offsets(self._tps)
        async with asyncio.timeout(timeout_s):
            while not await self._caught_up(ends):
                await asyncio.sleep(0.02)
        return self.states.get(session_id)

    async def _caught_up(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()
