"""The WebSocket protocol (version 1) as typed models, both directions. Documented in README.md#protocol.

Client -> server: JSON text messages (:data:`ClientMessage`, validated by :func:`parse_client_message`),
and binary frames of raw audio in the format declared by ``start``. Server -> client: JSON text messages
(:data:`ServerMessage`: ``ready``, ``utterance_start``, ``utterance_end``, ``realtime``, ``final``,
``translation``, ``error``, ``langs``, ``stopped``, ``pong``); :func:`result_message` turns a Kafka
``Result`` into the message its client receives.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from schemas.errors import BabelstreamError
from schemas.langs import normalize_lang
from schemas.records import AUDIO_SAMPLE_RATE_HZ, Encoding, Result, ResultKind

PROTOCOL_VERSION = 1
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
MAX_TARGET_LANGS = 8  # translations a session may ask for each utterance


class ProtocolError(BabelstreamError):
    """A client mistake: reported to that client as an ``error`` message."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal

    def to_message(self) -> ErrorMsg:
        return ErrorMsg(code=self.code, message=self.message, fatal=self.fatal)


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _lang(v: str | None) -> str | None:
    return normalize_lang(v)  # raises UnknownLanguage (a ValueError) with a clear message


def _langs(v: list[str] | None) -> list[str] | None:
    return None if v is None else [code for x in v if (code := _lang(x))]


class _Targets(_Msg):
    """``target_lang`` (one language) and ``target_langs`` (several): both valid, together too."""

    target_lang: str | None = None
    target_langs: Annotated[list[str], Field(max_length=MAX_TARGET_LANGS)] | None = None

    _norm_targets = field_validator("target_langs")(lambda cls, v: _langs(v))

    @property
    def targets(self) -> list[str]:
        """Every target asked for, ``target_lang`` first, each once."""
        return list(dict.fromkeys(x for x in [self.target_lang, *(self.target_langs or [])] if x))

    @model_validator(mode="after")
    def _not_too_many(self) -> _Targets:
        if len(self.targets) > MAX_TARGET_LANGS:
            raise ValueError(f"{len(self.targets)} translation targets asked for; at most {MAX_TARGET_LANGS}")
        return self


class Start(_Targets):
    type: Literal["start"]
    sample_rate: int = Field(AUDIO_SAMPLE_RATE_HZ, description="Hz of the binary audio frames")
    encoding: Encoding = "pcm_s16le"
    channels: int = Field(1, ge=1)
    source_lang: str | None = None
    translate: bool = False
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    resume_token: Annotated[str, Field(max_length=256)] | None = None
    prompt: Annotated[str, Field(max_length=800)] | None = None  # domain text: names, jargon, spelling
    hotwords: Annotated[str, Field(max_length=400)] | None = None  # words to favour
    realtime: bool = True
    received_up_to: int | None = Field(None, ge=-1, description="resume: finals up to this segment are held")
    broadcast: bool = False  # viewers may watch this session's captions (a resume keeps its broadcast)
    public: bool = False  # with broadcast: viewers need no token

    @model_validator(mode="after")
    def _public_is_a_broadcast(self) -> Start:
        if self.public and not self.broadcast:
            raise ValueError("public=true needs broadcast=true")
        return self

    _norm = field_validator("source_lang", "target_lang")(lambda cls, v: _lang(v))


class SetLangs(_Targets):
    type: Literal["set_langs"]
    source_lang: str | None = None
    translate: bool | None = None

    _norm = field_validator("source_lang", "target_lang")(lambda cls, v: _lang(v))


class Flush(_Msg):
    type: Literal["flush"]


class Stop(_Msg):
    type: Literal["stop"]


class Ping(_Msg):
    type: Literal["ping"]


class RotateViewerToken(_Msg):
    """The speaker of a broadcast asks for a new viewer token: viewers holding the old one are let go."""

    type: Literal["rotate_viewer_token"]


class EndBroadcast(_Msg):
    """The speaker ends the broadcast (the session goes on): viewers get the transcript and ``ended``."""

    type: Literal["end_broadcast"]


Control = SetLangs | Flush | Stop | Ping | RotateViewerToken | EndBroadcast  # what a started session handles
ClientMessage = Annotated[Start | Control, Field(discriminator="type")]
CLIENT_TYPES = ("start", "set_langs", "flush", "stop", "ping", "rotate_viewer_token", "end_broadcast")
_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


def parse_client_message(text: str) -> Start | Control:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError("invalid_json", f"text frames must be JSON: {e}") from None
    except ValueError as e:  # e.g. an integer literal longer than Python's 4,300-digit limit
        raise ProtocolError("invalid_message", f"text frame rejected: {e}") from None
    if not isinstance(raw, dict) or "type" not in raw:
        raise ProtocolError("invalid_message", "a message must be a JSON object with a 'type'")
    if raw["type"] not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {raw['type']!r}; expected {', '.join(CLIENT_TYPES)}")
    try:
        return _adapter.validate_python(raw)
    except ValidationError as e:
        raise invalid(raw["type"], e) from None


def invalid(kind: str, e: ValidationError, fatal: bool = False) -> ProtocolError:
    """The client error for a message of type ``kind`` that its model refused, naming the first field."""
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or "message"
    msg = str(first.get("ctx", {}).get("error") or first["msg"])
    code = "unsupported_language" if "language" in msg else "invalid_message"
    return ProtocolError(code, f"{kind}: {where}: {msg}", fatal)


# -- server -> client -----------------------------------------------------------------------------------
class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json()


class _OfUtterance(_Out):
    """A message about one utterance of the session: its ``utterance_index`` (0, 1, 2... as in ``ready``'s
    ``next_utterance_index`` and ``start``'s ``received_up_to``). ``segment_id``, the earlier name, still
    goes out beside it with the same value and is deprecated: it will be removed in a later release."""

    utterance_index: int

    @computed_field(description="deprecated: the same as utterance_index")  # type: ignore[prop-decorator]
    @property
    def segment_id(self) -> int:
        return self.utterance_index


class BroadcastOut(_Out):
    """How viewers watch a broadcast session. ``viewer_token`` is given when the broadcast begins and when
    it is rotated (only its digest is stored: a resumed speaker is not told it again); a public broadcast
    has none."""

    type: Literal["broadcast"] = "broadcast"
    broadcast_id: str
    public: bool
    viewer_token: str | None = None
    ended: bool = False


class Ready(_Out):
    type: Literal["ready"] = "ready"
    protocol: int = PROTOCOL_VERSION
    session_id: str
    resumed: bool
    next_utterance_index: int
    sample_rate: int
    encoding: str
    channels: int
    source_lang: str | None
    target_lang: str | None
    target_langs: list[str] = []  # every target, target_lang first
    translate: bool
    resume_token: str | None = None  # the secret the next reconnect must present (a new one each time)
    broadcast: BroadcastOut | None = None  # the session is broadcast: how viewers watch it


class UtteranceStart(_OfUtterance):
    type: Literal["utterance_start"] = "utterance_start"
    utterance_id: str
    audio_start_ms: int


class UtteranceEnd(_OfUtterance):
    type: Literal["utterance_end"] = "utterance_end"
    utterance_id: str
    reason: str
    audio_end_ms: int


class Langs(_Out):
    type: Literal["langs"] = "langs"
    source_lang: str | None
    target_lang: str | None
    target_langs: list[str] = []  # every target, target_lang first
    translate: bool


class Stopped(_Out):
    type: Literal["stopped"] = "stopped"
    pending: list[int]


class Pong(_Out):
    type: Literal["pong"] = "pong"
    time_ms: int


class _ResultOut(_OfUtterance):
    """Fields every message derived from a Kafka ``Result`` carries."""

    session_id: str
    utterance_id: str
    text: str
    language: str | None
    audio_start_ms: int
    audio_end_ms: int
    processing_ms: int


class SegmentOut(_Out):
    start_ms: int
    end_ms: int
    text: str


class Realtime(_ResultOut):
    type: Literal["realtime"] = "realtime"
    revision: int
    translation: str | None = None  # the interim text translated (a later message of the same revision)
    target_lang: str | None = None


class Final(_ResultOut):
    type: Literal["final"] = "final"
    segments: list[SegmentOut]
    language_probability: float | None


class TranslationOut(_ResultOut):
    type: Literal["translation"] = "translation"
    source_text: str
    source_lang: str
    target_lang: str
    backend: str


class ErrorMsg(_Out):
    """A client mistake, a service condition, or (with the utterance fields) one utterance that failed."""

    type: Literal["error"] = "error"
    code: str
    message: str
    fatal: bool = False
    session_id: str | None = None
    utterance_id: str | None = None
    utterance_index: int | None = None
    target_lang: str | None = None  # a translation that failed: into which language

    @computed_field(description="deprecated: the same as utterance_index")  # type: ignore[prop-decorator]
    @property
    def segment_id(self) -> int | None:
        return self.utterance_index


ServerMessage = (
    Ready
    | UtteranceStart
    | UtteranceEnd
    | Langs
    | Stopped
    | Pong
    | Realtime
    | Final
    | TranslationOut
    | ErrorMsg
    | BroadcastOut
)


TRANSLATION_ERRORS = frozenset({"unsupported_pair", "translation_failed"})  # one target's translation failed


def result_message(r: Result) -> Realtime | Final | TranslationOut | ErrorMsg:
    """The message a WebSocket client receives for a Kafka ``Result`` of its session."""
    if r.kind is ResultKind.ERROR:
        err = r.error
        return ErrorMsg(
            code=err.code if err else "internal",
            message=err.message if err else "",
            session_id=r.session_id,
            utterance_id=r.utterance_id,
            utterance_index=r.utterance_index,
            target_lang=r.target_lang if err is not None and err.code in TRANSLATION_ERRORS else None,
        )
    common: dict[str, Any] = dict(
        session_id=r.session_id,
        utterance_id=r.utterance_id,
        utterance_index=r.utterance_index,
        text=r.text,
        language=r.language,
        audio_start_ms=r.audio_start_ms,
        audio_end_ms=r.audio_end_ms,
        processing_ms=r.processing_ms,
    )
    if r.kind is ResultKind.REALTIME:
        t = r.translation
        return Realtime(
            **common, revision=r.seq, translation=t.text if t else None, target_lang=t.target_lang if t else None
        )
    if r.kind is ResultKind.FINAL:
        segments = [SegmentOut(start_ms=x.start_ms, end_ms=x.end_ms, text=x.text) for x in r.segments]
        return Final(**common, segments=segments, language_probability=r.language_probability)
    t = r.translation
    if t is None:
        raise ValueError(f"TRANSLATION result {r.utterance_id} carries no translation")
    common["text"] = t.text
    return TranslationOut(
        **common, source_text=r.text, source_lang=t.source_lang, target_lang=t.target_lang, backend=t.backend
    )
