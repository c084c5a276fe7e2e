"""Logging for every Babelstream process: one format, and Kafka clients' repeats held back.

A broker outage makes aiokafka log the same error for every connection attempt (about a hundred lines a
second per process); :class:`Repeats` lets one record of each kind (logger, level, message template) through
every ``window_s`` and tells, on the next one it lets through, how many like it it held back. The gateway
says itself how long Kafka has been unreachable (``gateway.server``), so nothing is lost but the noise.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

NOISY = ("aiokafka", "kafka", "faust", "mode")  # client libraries that repeat themselves in an outage
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Repeats(logging.Filter):
    def __init__(
        self,
        window_s: float = 30.0,
        prefixes: tuple[str, ...] = NOISY,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self.window_s, self.prefixes, self.clock, self.max_kinds = window_s, prefixes, clock, max_kinds
        self._kinds: OrderedDict[tuple[str, int, str], tuple[float, int]] = OrderedDict()  # first seen, held

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] not in self.prefixes or record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        shown = self._kinds.pop(kind, None)
        if shown is not None and now - shown[0] < self.window_s:
            self._kinds[kind] = (shown[0], shown[1] + 1)
            return False
        if shown is not None and shown[1]:
            record.msg = f"{record.msg} [and {shown[1]} more like it in the last {now - shown[0]:.0f} s]"
        self._kinds[kind] = (now, 0)
        while len(self._kinds) > self.max_kinds:
            self._kinds.popitem(last=False)
        return True


def configure(level: str) -> None:
    """The root logger at ``level``, with :class:`Repeats` on its handler."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    hold_back_repeats()


def hold_back_repeats() -> None:
    """:class:`Repeats` on every handler of the root logger (again after Faust's worker set up its own)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Repeats) for f in handler.filters):
            handler.addFilter(Repeats())
