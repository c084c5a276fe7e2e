"""Broadcasts, sans I/O: who may watch a session's captions, and what a broadcast changes of its session.

A broadcast is a session its speaker started with ``broadcast: true``. Viewers know it by its
``broadcast_id`` (never the session id, which with the resume token controls the session) and, unless
it is public, by a read-only ``viewer_token`` of which only the digest is stored in the session state
(rotating it lets go of every viewer holding the old one). Tokens and ids come from the ``secret``
function the session is given, so tests pass their own. A broadcast's audio asks the workers for its
viewers' languages beside the speaker's own targets (:func:`wanted`); the translations only the viewers
read are not sent to the speaker (:func:`asked`)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from schemas.messages import TRANSLATION_ERRORS, BroadcastOut, EndBroadcast, ProtocolError, RotateViewerToken, Start
from schemas.records import Result, ResultKind, SessionState, secret_digest

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


def carry_or_begin(
    st: SessionState, msg: Start, prior: SessionState | None, secret: Callable[[int], str]
) -> str | None:
    """A resumed broadcast goes on as it was (into ``st``, the new connection's state); a ``broadcast``
    start begins one. Returns a new viewer token (None for a public broadcast, or one begun earlier:
    only its digest is kept)."""
    if prior is not None and prior.broadcast_id is not None:
        st.broadcast_id, st.viewer_token_sha256 = prior.broadcast_id, prior.viewer_token_sha256
        st.broadcast_ended = prior.broadcast_ended
        return None
    if not msg.broadcast:
        return None
    made = new_broadcast(secret, msg.public)
    st.broadcast_id = made.broadcast_id
    st.viewer_token_sha256 = None if made.viewer_token is None else secret_digest(made.viewer_token)
    return made.viewer_token


def control(st: SessionState, msg: RotateViewerToken | EndBroadcast, secret: Callable[[int], str]) -> BroadcastOut:
    """The speaker rotates the viewer token or ends the broadcast (into ``st``); what it is told."""
    if st.broadcast_id is None:
        raise ProtocolError(
            "not_broadcast", f"{msg.type}: this session is not broadcast (start it with broadcast=true)"
        )
    if st.broadcast_ended:
        raise ProtocolError("broadcast_ended", f"{msg.type}: the broadcast has ended")
    token = None
    if isinstance(msg, RotateViewerToken):
        if st.viewer_token_sha256 is None:
            raise ProtocolError("invalid_message", "rotate_viewer_token: a public broadcast has no viewer token")
        token = secret(VIEWER_TOKEN_BYTES)
        st.viewer_token_sha256 = secret_digest(token)
    else:
        st.broadcast_ended = True
    told = announce(st, token)
    assert told is not None
    return told


def broadcasting(st: SessionState) -> bool:
    """A broadcast that has not ended: its viewers' languages are translated too."""
    return st.broadcast_id is not None and not st.broadcast_ended


def own_targets(st: SessionState) -> list[str]:
    return st.targets if st.translate else []


def wanted(st: SessionState, audience_langs: list[str]) -> tuple[str | None, list[str], bool]:
    """``target_lang``, ``target_langs`` and ``translate`` of the session's audio events: the speaker's
    own targets, and a broadcast's viewers' languages (but the speaker's own language)."""
    if not broadcasting(st) or not audience_langs:
        return st.target_lang, st.targets, st.translate
    own = own_targets(st)
    langs = own + [x for x in audience_langs if x not in own and x != st.source_lang]
    return (langs[0], langs, True) if langs else (st.target_lang, st.targets, st.translate)


def asked(st: SessionState, r: Result) -> bool:
    """Whether the speaker asked for this result of its session (not: a translation only its broadcast's
    viewers read)."""
    if st.broadcast_id is None:
        return True
    if r.kind in (ResultKind.TRANSLATION, ResultKind.REALTIME) and r.translation is not None:
        return r.translation.target_lang in own_targets(st)
    if r.kind is ResultKind.ERROR and r.error is not None and r.error.code in TRANSLATION_ERRORS:
        return r.target_lang in own_targets(st)
    return True
