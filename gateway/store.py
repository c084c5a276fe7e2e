"""Session state shared by all gateway instances through the compacted sessions topic.

Each gateway reads the whole topic into memory and keeps following it, so a client reconnecting to any
instance resumes with its languages and utterance counter. :meth:`SessionStore.get` first waits until the
local copy has caught up with the topic's end as of the call, so a state written a moment ago by another
instance is seen. Unreadable states are dead-lettered (``streams.follower``).
"""

from __future__ import annotations

from schemas.records import SessionState
from streams.deadletter import DeadLetters
from streams.follower import TopicFollower
from streams.topics import Codecs


class SessionStore:
    def __init__(self, bootstrap: str, topic: str, codecs: Codecs, dead_letters: DeadLetters) -> None:
        self.states: dict[str, SessionState] = {}
        self._follower = TopicFollower(
            bootstrap, topic, codecs.session, self._on_record, dead_letters, from_start=True, tombstones=True
        )

    def _on_record(self, key: bytes | None, state: SessionState | None) -> None:
        sid = key.decode(errors="replace") if key else ""
        if state is None:
            self.states.pop(sid, None)  # tombstone
        else:
            self.states[sid] = state

    async def start(self, timeout_s: float = 30.0) -> None:
        await self._follower.start(timeout_s)

    async def get(self, session_id: str, timeout_s: float = 10.0) -> SessionState | None:
        await self._follower.wait_caught_up(timeout_s)
        return self.states.get(session_id)

    async def stop(self) -> None:
        await self._follower.stop()
