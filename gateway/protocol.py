"""The WebSocket protocol (version 1), validated with pydantic. Documented in README.md#protocol.

Client -> server: JSON text messages below, and binary frames of raw audio in the format declared by
``start``. Server -> client: JSON text messages (``ready``, ``utterance_start``, ``utterance_end``,
``realtime``, ``final``, ``translation``, ``error``, ``stopped``, ``pong``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from babelstream.engines.langs import normalize_lang

PROTOCOL_VERSION = 1
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class ProtocolError(Exception):
    """A client mistake: reported to that client as an ``error`` message."""

    def __init__(self, code: str, message: str, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal

    def to_message(self) -> dict[str, Any]:
        return error_message(self.code, self.message, self.fatal)


def error_message(code: str, message: str, fatal: bool = False) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "fatal": fatal}


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _lang(v: str | None) -> str | None:
    return normalize_lang(v)  # raises UnknownLanguage (a ValueError) with a clear message


class Start(_Msg):
    type: Literal["start"]
    sample_rate: int = Field(16000, description="Hz of the binary audio frames")
    encoding: Literal["pcm_s16le", "pcm_f32le"] = "pcm_s16le"
    channels: int = Field(1, ge=1)
    source_lang: str | None = None
    target_lang: str | None = None
    translate: bool = False
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    realtime: bool = True
    received_up_to: int | None = Field(None, ge=-1, description="resume: finals up to this segment are held")

    _norm = field_validator("source_lang", "target_lang")(lambda cls, v: _lang(v))


class SetLangs(_Msg):
    type: Literal["set_langs"]
    source_lang: str | None = None
    target_lang: str | None = None
    translate: bool | None = None

    _norm = field_validator("source_lang", "target_lang")(lambda cls, v: _lang(v))


class Flush(_Msg):
    type: Literal["flush"]


class Stop(_Msg):
    type: Literal["stop"]


class Ping(_Msg):
    type: Literal["ping"]


ClientMessage = Annotated[Start | SetLangs | Flush | Stop | Ping, Field(discriminator="type")]
_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


def parse_client_message(text: str) -> Start | SetLangs | Flush | Stop | Ping:
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError("invalid_json", f"text frames must be JSON: {e}") from None
    if not isinstance(raw, dict) or "type" not in raw:
        raise ProtocolError("invalid_message", "a message must be a JSON object with a 'type'")
    if raw["type"] not in ("start", "set_langs", "flush", "stop", "ping"):
        raise ProtocolError(
            "unknown_type", f"unknown message type {raw['type']!r}; expected start, set_langs, flush, stop, ping"
        )
    try:
        return _adapter.validate_python(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "message"
        msg = str(first.get("ctx", {}).get("error") or first["msg"])
        code = "unsupported_language" if "language" in msg else "invalid_message"
        raise ProtocolError(code, f"{raw['type']}: {where}: {msg}") from None
