"""Acks in offset order, sans I/O.

The STT worker finishes utterances out of order (a short one after a long one began), but the offset a
partition commits must never pass an event whose utterance is unfinished: Faust commits past any run of
acked offsets it finds, gaps included. :class:`InOrderAcks` holds each consumed event until it and every
earlier event of its partition are done, then hands them out, oldest first, to be acked.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")  # the consumer's own handle of an event (a Faust event)


@dataclass
class InOrderAcks(Generic[T]):
    _waiting: dict[int, OrderedDict[int, tuple[T, bool]]] = field(default_factory=dict)  # partition -> offset

    def consumed(self, partition: int, offset: int, handle: T) -> None:
        self._waiting.setdefault(partition, OrderedDict())[offset] = (handle, False)

    def done(self, partition: int, offset: int) -> list[T]:
        """Mark one event done; returns the handles that may now be acked, in offset order."""
        queue = self._waiting.get(partition)
        if queue is None or offset not in queue:
            return []  # a partition given up meanwhile: its new owner reads the event again
        queue[offset] = (queue[offset][0], True)
        ready = []
        while queue and next(iter(queue.values()))[1]:
            ready.append(queue.popitem(last=False)[1][0])
        return ready

    def waiting(self, partition: int) -> int:
        return len(self._waiting.get(partition, ()))

    def drop_partitions(self, partitions: set[int]) -> None:
        for p in partitions:
            self._waiting.pop(p, None)
