"""The gateway's two background loops: whether Kafka answers (:class:`KafkaWatch`), and the upkeep of
session states (:func:`keep_sessions`: refreshed while live, tombstoned when unused for
SESSION_RESUME_TTL_S, so the sessions topic does not grow forever)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from gateway import metrics as m
from schemas.records import now_ms

log = logging.getLogger(__name__)


class KafkaWatch:
    """``ok``: whether Kafka answered the latest probe (a resume is refused at once while it does not)."""

    def __init__(self, reachable: Callable[[float], Awaitable[bool]]) -> None:
        self._reachable = reachable
        self.ok = True

    async def run(self, every_s: float = 5.0, remind_s: float = 30.0) -> None:
        """Probe every ``every_s``; while Kafka does not answer, one line every ``remind_s`` says for how
        long (the client library's own errors are held back: ``babelstream.logs``)."""
        loop = asyncio.get_running_loop()
        down_since_s = reminded_s = 0.0
        while True:
            ok = await self._reachable(every_s)
            now_s = loop.time()
            if ok and not self.ok:
                log.warning("Kafka is reachable again after %.0f s", now_s - down_since_s)
            elif not ok and self.ok:
                down_since_s = reminded_s = now_s
                log.warning("Kafka is unreachable")
            elif not ok and now_s - reminded_s >= remind_s:
                reminded_s = now_s
                log.warning("Kafka unreachable for %.0f s", now_s - down_since_s)
            self.ok = ok
            m.KAFKA_UP.set(int(ok))
            await asyncio.sleep(every_s)


async def keep_sessions(
    ttl_s: float,
    refresh_live: Callable[[], Awaitable[None]],
    expired: Callable[[int], Iterable[str]],
    is_live: Callable[[str], bool],
    delete: Callable[[str], Awaitable[object]],
) -> None:
    """Every ``ttl_s / 4`` (at most a minute): ``refresh_live()`` states, then ``delete`` each state not
    updated for ``ttl_s`` (``expired(before_ms)``) whose session is not live here."""
    ttl_ms = int(ttl_s * 1000)
    every_s = min(60.0, ttl_s / 4)
    while True:
        await asyncio.sleep(every_s)
        try:
            await refresh_live()
            for sid in expired(now_ms() - ttl_ms):
                if not is_live(sid):
                    await delete(sid)
                    m.SESSIONS_EXPIRED.inc()
        except Exception:
            log.exception("session upkeep failed; trying again in %g s", every_s)
