"""The OpenAI-compatible audio API as typed models, both directions (documented in README.md#integrations).

``POST /v1/audio/transcriptions`` and ``POST /v1/audio/translations`` take a multipart form (``file``,
``model``, ``language``, ``prompt``, ``response_format``, ``timestamp_granularities[]``, ``temperature``),
as OpenAI's API and its official clients send it; the answer is ``json``, ``text``, ``srt``, ``vtt`` or
``verbose_json`` with segments. Errors have OpenAI's shape (``{"error": {"message", "type", "param",
"code"}}``), so its clients raise their usual exceptions. Pure: the gateway does the I/O.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.errors import BabelstreamError
from schemas.langs import LANGUAGES, normalize_lang
from schemas.subtitles import Cue, to_srt, to_vtt

API_MODEL_ALIASES = ("whisper-1",)  # the name OpenAI's clients send by default: Babelstream's own model
ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


class ApiError(BabelstreamError):
    """An OpenAI-shaped error: HTTP ``status``, ``type`` (``invalid_request_error``, ...), ``code``."""

    def __init__(
        self, status: int, message: str, *, code: str, param: str | None = None, type: str = "invalid_request_error"
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class AudioRequest(BaseModel):
    """The form fields of a transcription or translation request (``file`` is read apart)."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # fields OpenAI adds later are not errors

    model: Annotated[str, Field(min_length=1, max_length=128)]
    language: str | None = None  # transcriptions only: ISO 639-1 (anything normalize_lang takes)
    prompt: Annotated[str, Field(max_length=800)] | None = None
    response_format: ResponseFormat = "json"
    timestamp_granularities: list[Literal["segment", "word"]] = ["segment"]
    temperature: Annotated[float, Field(ge=0, le=1)] = 0.0  # accepted; the workers' fallback decides
    stream: bool = False

    _norm = field_validator("language")(lambda cls, v: normalize_lang(v) if v else None)

    @classmethod
    def from_form(cls, fields: dict[str, list[str]], *, translation: bool) -> AudioRequest:
        """From the form's text fields (each name with all its values); raises :class:`ApiError`."""
        data: dict[str, object] = {k.removesuffix("[]"): v if k.endswith("[]") else v[-1] for k, v in fields.items()}
        if translation:
            data.pop("language", None)  # translations are always into English; OpenAI's take no language
        try:
            req = cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            msg = str(first.get("ctx", {}).get("error") or first["msg"])
            code = "unsupported_language" if param == "language" else "invalid_value"
            raise ApiError(400, f"{param}: {msg}", code=code, param=param) from None
        if "word" in req.timestamp_granularities:
            raise ApiError(
                400,
                "word timestamps are not supported; use timestamp_granularities[]=segment",
                code="unsupported_value",
                param="timestamp_granularities",
            )
        if req.stream:
            raise ApiError(
                400,
                "streaming responses are not supported here: use the WebSocket API",
                code="unsupported_value",
                param="stream",
            )
        return req


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "babelstream"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Usage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: int


class TextResponse(BaseModel):
    text: str
    usage: Usage


class VerboseSegment(BaseModel):
    """OpenAI's segment fields; Babelstream keeps no per-segment log-probabilities: those read 0."""

    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int] = []
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class VerboseResponse(BaseModel):
    task: Literal["transcribe", "translate"]
    language: str  # OpenAI names it (``english``); the ISO code is in ``language_code``
    language_code: str | None
    duration: float
    text: str
    segments: list[VerboseSegment]
    usage: Usage


def render(
    req: AudioRequest,
    cues: list[Cue],
    *,
    task: Literal["transcribe", "translate"],
    language: str | None,
    duration_s: float,
) -> tuple[str, str]:
    """The response body and its content type, in the format the request asked for."""
    text = " ".join(c.text for c in cues if c.text)
    usage = Usage(seconds=max(1, round(duration_s)) if duration_s > 0 else 0)
    if req.response_format == "text":
        return text + "\n", "text/plain; charset=utf-8"
    if req.response_format == "srt":
        return to_srt(cues), "application/x-subrip; charset=utf-8"
    if req.response_format == "vtt":
        return to_vtt(cues), "text/vtt; charset=utf-8"
    if req.response_format == "verbose_json":
        segments = [
            VerboseSegment(id=i, seek=round(c.start_ms / 10), start=c.start_ms / 1000, end=c.end_ms / 1000, text=c.text)
            for i, c in enumerate(cues)
        ]
        name = LANGUAGES.get(language or "", language or "unknown").lower()
        body = VerboseResponse(
            task=task,
            language=name,
            language_code=language,
            duration=round(duration_s, 3),
            text=text,
            segments=segments,
            usage=usage,
        )
        return body.model_dump_json(), "application/json"
    return TextResponse(text=text, usage=usage).model_dump_json(), "application/json"
