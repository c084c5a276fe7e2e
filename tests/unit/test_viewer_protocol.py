"""The viewers' protocol: the few messages a viewer may send (anything else closes it), and a viewer's
bounded queue (the transcript it joins with is not counted against it; past the bound it is dropped)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.captions import Sent
from gateway.viewers import ViewerLink
from schemas.messages import ProtocolError
from schemas.viewers import SetLang, ViewerPing, Watch, parse_viewer_message

pytestmark = pytest.mark.unit


def test_a_viewer_watches_sets_its_language_and_pings() -> None:
    w = parse_viewer_message('{"type": "watch", "broadcast_id": "abc-_1", "lang": "Portuguese", "after": 4}')
    assert isinstance(w, Watch) and w.lang == "pt" and w.after == 4 and w.viewer_token is None
    assert parse_viewer_message('{"type": "watch", "broadcast_id": "b", "lang": "original"}').lang is None  # type: ignore[union-attr]
    assert isinstance(parse_viewer_message('{"type": "set_lang", "lang": "de"}'), SetLang)
    assert isinstance(parse_viewer_message('{"type": "ping"}'), ViewerPing)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type": "start"}', "not_a_viewer_message"),  # a speaker's message
        ('{"type": "set_langs", "target_lang": "de"}', "not_a_viewer_message"),
        ('{"type": "end_broadcast"}', "not_a_viewer_message"),
        ("[1]", "not_a_viewer_message"),
        ("not json", "invalid_json"),
        ('{"type": "watch", "broadcast_id": "../etc"}', "invalid_message"),
        ('{"type": "watch", "broadcast_id": "b", "lang": "klingon"}', "unsupported_language"),
        ('{"type": "watch", "broadcast_id": "b", "after": -5}', "invalid_message"),
        ('{"type": "watch", "broadcast_id": "b", "extra": 1}', "invalid_message"),
    ],
)
def test_anything_else_closes_the_viewer(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_viewer_message(text)
    assert e.value.code == code and e.value.fatal


class Link(ViewerLink):
    aborted = False

    def abort(self) -> None:
        self.aborted = True


async def test_a_viewer_that_does_not_read_is_dropped_but_its_backlog_does_not_count() -> None:
    link = Link(queue_max=3)
    for i in range(50):
        link.send(Sent("final", "{}", i), backlog=True)
    for i in range(3):
        link.send(Sent("final", "{}", 100 + i))
    assert not link.slow and len(link.items) == 53
    assert (await link.next()) is not None
    link.send(Sent("final", "{}", 200))
    assert link.slow and link.aborted and list(link.items) == [(None, False)]  # what was unsent is dropped
    assert await asyncio.wait_for(link.next(), 1) is None
    link.send(Sent("final", "{}", 300))  # after the end: nothing
    assert not link.items


async def test_a_viewer_that_asks_for_the_transcript_again_and_again_without_reading_is_dropped() -> None:
    link = Link(queue_max=3, backlog_max=100)
    for _ in range(2):  # a set_lang: the whole transcript again
        for i in range(50):
            link.send(Sent("final", "{}", i), backlog=True)
    assert not link.slow
    link.send(Sent("final", "{}", 51), backlog=True)
    assert link.slow and link.aborted
