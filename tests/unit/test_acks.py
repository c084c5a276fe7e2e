"""Acks in offset order (pure logic): a partition's commit never passes an unfinished utterance."""

from __future__ import annotations

from core.acks import InOrderAcks


def test_events_are_acked_only_once_every_earlier_event_is_done() -> None:
    acks: InOrderAcks[str] = InOrderAcks()
    for offset, name in enumerate(["u1-c0", "u2-c0", "u2-end", "u1-c1", "u1-end"]):
        acks.consumed(0, offset, name)
    assert acks.done(0, 1) == [] and acks.done(0, 2) == []  # u2 finished first: u1's chunk 0 holds it back
    assert acks.done(0, 0) == ["u1-c0", "u2-c0", "u2-end"]
    assert acks.done(0, 4) == [] and acks.done(0, 3) == ["u1-c1", "u1-end"]
    assert acks.waiting(0) == 0


def test_partitions_are_independent_and_revoked_ones_forgotten() -> None:
    acks: InOrderAcks[str] = InOrderAcks()
    acks.consumed(0, 10, "a")
    acks.consumed(1, 5, "b")
    assert acks.done(1, 5) == ["b"]
    acks.drop_partitions({0})
    assert acks.done(0, 10) == [] and acks.waiting(0) == 0  # its new owner reads it again
