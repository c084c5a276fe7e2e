"""Results to the speaker's own client: delivered live, and those it missed while away delivered again
after a resumed session's ``ready`` (``start``'s ``received_up_to`` says what it holds already)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from gateway import metrics as m
from gateway.link import ClientLink
from schemas.records import Result, ResultKind, SessionState, now_ms

log = logging.getLogger(__name__)

BACKFILL_MARGIN_MS = 60_000  # results up to this long before the disconnect are looked at again


def deliver_to(conn: ClientLink, result: Result, observe_latency: bool = True) -> None:
    """A result of the connection's session, as its client's message (unless a duplicate or unwanted)."""
    msg = conn.session.result(result)
    if msg is None:
        return
    conn.enqueue(msg)
    m.RESULTS.labels(msg.type).inc()
    if observe_latency and result.audio_created_at_ms and result.kind is not ResultKind.ERROR:
        m.RESULT_LATENCY_S.labels(msg.type).observe(max(0, now_ms() - result.audio_created_at_ms) / 1000)


class MissedResults:
    """What came while a resumed session was away: read from the results topic, delivered in a task of
    the link's own (cancelled when it is released); duplicates are dropped by the session."""

    def __init__(
        self, read: Callable[[str, int], Awaitable[list[Result]]], current: Callable[[str], ClientLink | None]
    ) -> None:
        """``read(session_id, since_ms)``: its results since then; ``current(session_id)``: its link now."""
        self.read = read
        self.current = current

    @staticmethod
    def expect(conn: ClientLink, prior: SessionState, received_up_to: int | None) -> None:
        """A resume: the results since shortly before the session was last seen are to be looked at."""
        conn.backfill_since_ms = prior.updated_at_ms - BACKFILL_MARGIN_MS
        conn.backfill_after_segment = -1 if received_up_to is None else received_up_to

    def start(self, conn: ClientLink) -> None:
        """After the resumed session's ``ready``."""
        if conn.backfill_since_ms is not None:
            conn.backfill_task = asyncio.create_task(self._run(conn, conn.backfill_since_ms))
            conn.backfill_since_ms = None

    async def _run(self, conn: ClientLink, since_ms: int) -> None:
        sid = conn.session.session_id
        assert sid is not None
        try:
            results = await self.read(sid, since_ms)
        except Exception:
            log.exception("backfill of session %s failed", sid)
            return
        for r in results:
            if r.kind is not ResultKind.REALTIME and r.utterance_index > conn.backfill_after_segment:
                if self.current(sid) is not conn:
                    return
                deliver_to(conn, r, observe_latency=False)
