"""Session state on the compacted sessions topic.

Each gateway reads the whole topic into memory and keeps following it, so a client reconnecting to any
instance resumes with its languages and utterance counter. :meth:`SessionStore.get` first waits until the
local copy has caught up with the topic's end as of the call, so a state written a moment ago by another
instance is seen. A state older (by connection epoch) than the one already known is a stale write of a
superseded connection and is ignored. ``on_change`` tells the gateway of every newer state, so a
connection that another gateway took over is closed there. Unreadable states are dead-lettered
(``streams.follower``); one met in the topic's history at start only if it is still its session's last,
and then its session is tombstoned (``delete``), so no restart meets it again: a state no gateway can read
resumes nothing anyway. One whose schema is merely unknown here (a newer gateway wrote it) is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from schemas.codec import CodecError, UnknownSchema
from schemas.records import SessionState
from streams.deadletter import DeadLetters
from streams.endpoint import Kafka
from streams.follower import TopicFollower
from streams.topics import Codecs

log = logging.getLogger(__name__)


class SessionStore:
    def __init__(
        self,
        bootstrap: Kafka,
        topic: str,
        codecs: Codecs,
        dead_letters: DeadLetters,
        on_change: Callable[[SessionState], None] | None = None,
        delete: Callable[[str, int | None], Awaitable[object]] | None = None,
        on_gone: Callable[[SessionState], None] | None = None,
    ) -> None:
        """``delete(session_id, partition)`` tombstones a session (in that partition, None: its key's);
        unset: unreadable states are only dead-lettered; ``on_gone(state)``: a broadcast session's state was
        tombstoned (its last state)."""
        self.states: dict[str, SessionState] = {}
        self.broadcasts: dict[str, str] = {}  # broadcast id -> session id
        self.on_gone = on_gone
        self.on_change = on_change
        self.delete = delete
        self._follower = TopicFollower(
            bootstrap,
            topic,
            codecs.session,
            self._on_record,
            dead_letters,
            from_start=True,
            tombstones=True,
            on_unreadable=self._on_unreadable,
        )

    async def _on_unreadable(self, key: bytes, partition: int, error: CodecError) -> None:
        if self.delete is not None and not isinstance(error, UnknownSchema):
            sid = key.decode(errors="replace")
            log.warning("session %s: its last state is unreadable (%s); tombstoning it", sid, error)
            await self.delete(sid, partition)  # where the record is: a writer may have put it off its key's

    def _on_record(self, key: bytes | None, state: SessionState | None, offset: int) -> None:
        sid = key.decode(errors="replace") if key else ""
        if state is None:
            gone = self.states.pop(sid, None)  # tombstone
            if gone is not None and gone.broadcast_id is not None:
                self.broadcasts.pop(gone.broadcast_id, None)
                if self.on_gone is not None:
                    self.on_gone(gone)
            return
        known = self.states.get(sid)
        if known is not None and state.epoch < known.epoch:
            log.info("ignoring a stale state of session %s (epoch %d < %d)", sid, state.epoch, known.epoch)
            return
        self.states[sid] = state
        if state.broadcast_id is not None:
            self.broadcasts[state.broadcast_id] = sid
        if self.on_change is not None:
            self.on_change(state)

    def expired(self, before_ms: int) -> list[str]:
        """Sessions whose state was last written before ``before_ms``."""
        return [sid for sid, st in self.states.items() if st.updated_at_ms < before_ms]

    @property
    def running(self) -> bool:
        return self._follower.running

    async def start(self, timeout_s: float = 30.0) -> None:
        await self._follower.start(timeout_s)

    async def get(self, session_id: str, timeout_s: float = 10.0) -> SessionState | None:
        await self._follower.wait_caught_up(timeout_s)
        return self.states.get(session_id)

    async def broadcast(self, broadcast_id: str, timeout_s: float = 10.0) -> SessionState | None:
        """The newest state of the session broadcast as ``broadcast_id`` (caught up first, as :meth:`get`)."""
        await self._follower.wait_caught_up(timeout_s)
        sid = self.broadcasts.get(broadcast_id)
        return None if sid is None else self.states.get(sid)

    async def stop(self) -> None:
        await self._follower.stop()
