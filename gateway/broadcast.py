"""Broadcasts, sans I/O: who may watch a session's captions.

A broadcast is a session its speaker started with ``broadcast: true``. Viewers know it by its
``broadcast_id`` (never the session id, which with the resume token controls the session) and, unless
it is public, by a read-only ``viewer_token`` of which only the digest is stored in the session state
(rotating it lets go of every viewer holding the old one). Tokens and ids come from the ``secret``
function the session is given, so tests pass their own."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from schemas.messages import BroadcastOut
from schemas.records import SessionState, secret_digest

BROADCAST_ID_BYTES = 12  # 16 URL-safe characters: unguessable, short enough for a link or a QR code
VIEWER_TOKEN_BYTES = 24


@dataclass(frozen=True)
class NewBroadcast:
    broadcast_id: str
    viewer_token: str | None  # None: public


def new_broadcast(secret: Callable[[int], str], public: bool) -> NewBroadcast:
    return NewBroadcast(secret(BROADCAST_ID_BYTES), None if public else secret(VIEWER_TOKEN_BYTES))


def announce(state: SessionState, viewer_token: str | None = None) -> BroadcastOut | None:
    """What the speaker is told of its broadcast (the token only when it was just made)."""
    if state.broadcast_id is None:
        return None
    return BroadcastOut(
        broadcast_id=state.broadcast_id,
        public=state.viewer_token_sha256 is None,
        viewer_token=viewer_token,
        ended=state.broadcast_ended,
    )


def may_watch(state: SessionState | None, broadcast_id: str, viewer_token: str | None) -> bool:
    """Whether a viewer with ``viewer_token`` may watch ``broadcast_id`` (its session's newest ``state``).
    A broadcast that does not exist and a wrong token get the same answer, in the same time."""
    if state is None or state.broadcast_id is None or not hmac.compare_digest(state.broadcast_id, broadcast_id):
        hmac.compare_digest(secret_digest(viewer_token or ""), secret_digest("-"))  # the same work either way
        return False
    if state.viewer_token_sha256 is None:
        return True  # public
    return hmac.compare_digest(secret_digest(viewer_token or ""), state.viewer_token_sha256)
