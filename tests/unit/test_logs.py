"""Kafka clients' repeated errors are held back and counted, everything else passes."""

from __future__ import annotations

import logging

from babelstream.logs import Repeats


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_one_line_of_each_kind_per_window_then_how_many_were_held_back() -> None:
    now = [0.0]
    f = Repeats(window_s=30.0, clock=lambda: now[0])
    shown = []
    for second in range(60):  # an outage: a hundred connection errors a second, from two nodes
        now[0] = float(second)
        for i in range(100):
            r = record("aiokafka.conn", "Unable connect to node with id %s: %s", i % 2, "refused")
            if f.filter(r):
                shown.append(r.getMessage())
    assert len(shown) == 2, shown  # the first, and one 30 s later that counts the rest
    assert shown[1].endswith("[and 2999 more like it in the last 30 s]") and "node with id" in shown[1]


def test_other_loggers_other_kinds_and_lower_levels_pass() -> None:
    f = Repeats(window_s=30.0, clock=lambda: 0.0)
    assert all(f.filter(record("gateway.server", "Kafka unreachable for %d s", 30)) for _ in range(5))
    assert all(f.filter(record("aiokafka", "heartbeat", level=logging.INFO)) for _ in range(5))
    assert f.filter(record("aiokafka", "one")) and f.filter(record("aiokafka", "another"))
    assert f.filter(record("faust.transport", "one"))  # same words, another logger: another kind
    assert not f.filter(record("aiokafka", "one"))
