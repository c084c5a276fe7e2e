"""Who may connect and start a session on this gateway: a sans-I/O policy.

It keeps the counts (connections yet to send ``start``, oldest first; sessions per principal) and
*returns* its decisions, which the gateway core executes: the link to close when too many connections
wait to start (the one that waited longest, so a flood of connections that never start cannot lock real
clients out), or a :class:`ProtocolError` for a session that does not fit ``MAX_SESSIONS`` or its key's
own limit. Links are any hashable objects: the policy never touches them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from typing import Generic, TypeVar

from gateway.auth import ANONYMOUS, Principal
from schemas.messages import ProtocolError

L = TypeVar("L", bound=Hashable)


class Admission(Generic[L]):
    def __init__(self, max_sessions: int, max_sessions_per_key: int, max_unstarted: int) -> None:
        self.max_sessions = max_sessions
        self.max_sessions_per_key = max_sessions_per_key
        self.max_unstarted = max_unstarted
        self._unstarted: dict[L, None] = {}  # insertion order: oldest first
        self.sessions_of: Counter[str] = Counter()  # concurrent sessions per principal

    @property
    def unstarted(self) -> int:
        return len(self._unstarted)

    def connected(self, link: L) -> L | None:
        """A new connection, yet to start; returns the one to close if too many now wait."""
        self._unstarted[link] = None
        if len(self._unstarted) <= self.max_unstarted:
            return None
        oldest = next(iter(self._unstarted))
        del self._unstarted[oldest]
        return oldest

    def check(self, who: Principal, sessions: int) -> None:
        """Raise unless one more session of ``who`` fits, with ``sessions`` open on this gateway now."""
        if self.saturated(sessions):
            raise ProtocolError("server_busy", "this gateway has MAX_SESSIONS sessions; try another", fatal=True)
        limit = who.max_sessions or self.max_sessions_per_key
        if who is not ANONYMOUS and self.sessions_of[who.name] >= limit:
            raise ProtocolError("too_many_sessions", f"{who.name} already has {limit} sessions open", fatal=True)

    def saturated(self, sessions: int) -> bool:
        return sessions >= self.max_sessions

    def started(self, link: L, who: Principal) -> None:
        """``link`` started a session of ``who`` (after :meth:`check`, with no await between)."""
        self._unstarted.pop(link, None)
        self.sessions_of[who.name] += 1

    def released(self, link: L, who: Principal, started: bool) -> None:
        """``link`` is gone; ``started``: it had started a session (counted for ``who``)."""
        self._unstarted.pop(link, None)
        if started:
            self.sessions_of[who.name] -= 1
            if not self.sessions_of[who.name]:
                del self.sessions_of[who.name]
