"""Fan-out of the results topic to WebSocket clients.

Every gateway instance reads all partitions of the results topic (no consumer group, from the end at
start-up) and hands each result, with its offset (a session's results are in one partition: the offset
orders them), to the connection that owns its session if that connection is here, and to the
broadcast's viewers here.
A poison record is dead-lettered and delivery goes on (``streams.follower``).
"""

from __future__ import annotations

from collections.abc import Callable

from schemas.records import Result
from streams.deadletter import DeadLetters
from streams.endpoint import Kafka
from streams.follower import TopicFollower
from streams.topics import Codecs


class ResultRouter:
    def __init__(
        self,
        bootstrap: Kafka,
        topic: str,
        codecs: Codecs,
        deliver: Callable[[Result, int], None],
        dead_letters: DeadLetters,
    ) -> None:
        self.deliver = deliver
        self._follower = TopicFollower(bootstrap, topic, codecs.result, self._on_record, dead_letters, from_start=False)

    @property
    def running(self) -> bool:
        return self._follower.running

    def _on_record(self, key: bytes | None, result: Result | None, offset: int) -> None:
        assert result is not None  # no tombstones on the results topic: a null value is dead-lettered
        self.deliver(result, offset)

    async def start(self, timeout_s: float = 30.0) -> None:
        await self._follower.start(timeout_s)

    async def stop(self) -> None:
        await self._follower.stop()
