"""The viewers' protocol: watching a broadcast's captions, each viewer in its own language.

Over WebSocket (the gateway's ``/watch`` path) a viewer sends JSON text messages (:data:`ViewerMessage`:
``watch`` first, then ``set_lang`` and ``ping``) and never anything else: binary frames (audio), a
speaker's messages or anything unknown close it. Over Server-Sent Events
(``GET /v1/broadcasts/{id}/events``) the query carries what ``watch`` would. Either way the viewer gets
``watching``, the transcript so far (``final`` captions), ``live`` (the backlog ends here), then live
``realtime`` and ``final`` captions, and ``ended`` once the speaker ends the broadcast. Every caption has
a ``position``: a viewer that reconnects with the last one it has (``after``, or SSE's ``Last-Event-ID``)
gets exactly what came after it. Documented in README.md#broadcast.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from schemas.langs import normalize_lang
from schemas.messages import ErrorMsg, Pong, ProtocolError, _Msg, _OfUtterance, _Out, invalid

BROADCAST_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ORIGINAL = ""  # the language a viewer that names none reads: the speaker's own


def _lang(v: str | None) -> str | None:
    return None if v in (None, "", "original") else normalize_lang(v)


class Watch(_Msg):
    """Watch ``broadcast_id`` in ``lang`` (None: the speaker's own language); ``after``: the position of
    the last caption the viewer already has (-1 or None: it has none)."""

    type: Literal["watch"]
    broadcast_id: Annotated[str, Field(pattern=BROADCAST_ID_PATTERN)]
    viewer_token: Annotated[str, Field(max_length=256)] | None = None
    lang: str | None = None
    after: int | None = Field(None, ge=-1)

    _norm = field_validator("lang")(lambda cls, v: _lang(v))


class SetLang(_Msg):
    """Read on in another language: the transcript so far again in it, then its live captions."""

    type: Literal["set_lang"]
    lang: str | None = None

    _norm = field_validator("lang")(lambda cls, v: _lang(v))


class ViewerPing(_Msg):
    type: Literal["ping"]


ViewerMessage = Annotated[Watch | SetLang | ViewerPing, Field(discriminator="type")]
VIEWER_TYPES = ("watch", "set_lang", "ping")
_adapter: TypeAdapter[ViewerMessage] = TypeAdapter(ViewerMessage)


def parse_viewer_message(text: str) -> Watch | SetLang | ViewerPing:
    """A viewer's message; anything else is a fatal :class:`ProtocolError` (a viewer only watches)."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise ProtocolError("invalid_json", f"text frames must be JSON: {e}", fatal=True) from None
    if not isinstance(raw, dict) or raw.get("type") not in VIEWER_TYPES:
        kind = raw.get("type") if isinstance(raw, dict) else None
        raise ProtocolError(
            "not_a_viewer_message",
            f"viewers send only {', '.join(VIEWER_TYPES)} (got {kind!r}); this connection watches, it cannot speak",
            fatal=True,
        )
    try:
        return _adapter.validate_python(raw)
    except ValidationError as e:
        raise invalid(raw["type"], e, fatal=True) from None


def watch_query(fields: dict[str, object]) -> Watch:
    """A ``watch`` from an HTTP query (Server-Sent Events); a bad field is a (non-fatal) ProtocolError."""
    try:
        msg = _adapter.validate_python({**fields, "type": "watch"})
    except ValidationError as e:
        raise invalid("query", e) from None
    assert isinstance(msg, Watch)
    return msg


# -- server -> viewer -----------------------------------------------------------------------------------
class Watching(_Out):
    """The viewer is let in: what it watches, and the languages the broadcast is translated into now."""

    type: Literal["watching"] = "watching"
    broadcast_id: str
    lang: str | None  # None: the speaker's own language
    source_lang: str | None  # the speaker's language, when the speaker named it
    langs: list[str]  # languages viewers read now (each translated once, however many read it)
    ended: bool


class BroadcastInfo(_Out):
    """``GET /v1/broadcasts/{id}``: what a viewer may know of a broadcast before watching it."""

    broadcast_id: str
    source_lang: str | None
    langs: list[str]  # languages it is translated into now
    viewers: int  # on every gateway together
    ended: bool


class _Caption(_OfUtterance):
    """A caption: ``text`` in ``lang``, beside the speaker's ``original_text`` in ``original_lang``."""

    position: int  # where it stands in the broadcast: a reconnecting viewer says the last one it has
    text: str
    lang: str | None
    original_text: str
    original_lang: str | None
    audio_start_ms: int
    audio_end_ms: int


class CaptionRealtime(_Caption):
    type: Literal["realtime"] = "realtime"
    revision: int


class CaptionFinal(_Caption):
    type: Literal["final"] = "final"
    translation: str | None = None  # the route that made ``text``, when it is a translation
    # why ``text`` is the original although the viewer reads another language: ``not_requested`` (spoken
    # before anyone watched in it), ``unsupported_pair``, ``translation_failed``
    untranslated: str | None = None


class Live(_Out):
    """The transcript so far has been sent: what follows is live."""

    type: Literal["live"] = "live"
    position: int  # of the last caption sent before (-1: none)


class Ended(_Out):
    """The speaker ended the broadcast; the transcript is complete (the connection closes)."""

    type: Literal["ended"] = "ended"
    broadcast_id: str


ViewerOut = Watching | CaptionRealtime | CaptionFinal | Live | Ended | ErrorMsg | Pong
