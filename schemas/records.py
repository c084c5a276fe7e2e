"""Typed mirrors of the Avro records in ``schemas/``; field names match the ``.avsc`` files."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, get_args

AUDIO_SAMPLE_RATE_HZ = 16000  # audio events carry 16 kHz mono PCM16, whatever the client sent
PCM16_SAMPLE_BYTES = 2
AUDIO_SAMPLES_PER_MS = AUDIO_SAMPLE_RATE_HZ // 1000
AUDIO_BYTES_PER_MS = AUDIO_SAMPLES_PER_MS * PCM16_SAMPLE_BYTES
AUDIO_BYTES_PER_S = AUDIO_SAMPLE_RATE_HZ * PCM16_SAMPLE_BYTES
# the cap on one Kafka record: the producers' largest request, the consumers' fetch, every topic's
# max.message.bytes (an audio event or a result is far smaller: a record near it is a bug or an attack)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
Encoding = Literal["pcm_s16le", "pcm_f32le"]  # the sample formats a client may stream
MAX_CHANNELS = 64  # more than any record can mean (a gateway's MAX_CHANNELS is at most this)
MAX_INPUT_RATE_HZ = 768_000  # likewise for a client's sample rate


def _check(problems: list[str]) -> None:
    """Raise ValueError naming every problem of a record read from Kafka (possibly hostile)."""
    if problems:
        raise ValueError("; ".join(problems))


def _negative(record: object, *names: str) -> list[str]:
    return [f"{n}={getattr(record, n)} is negative" for n in names if (getattr(record, n) or 0) < 0]


def secret_digest(secret: str) -> str:
    """How a secret is kept (the ``*_sha256`` fields, API key files): its hex SHA-256, never itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


# The seq of the END a gateway writes for an utterance that another connection began and never ended (its
# gateway died, or the session was taken over): "close it with whatever audio you have".
TAKEOVER_SEQ = 2**31 - 1


def wanted_targets(target_lang: str | None, target_langs: list[str]) -> list[str]:
    """Every language a record asks a translation into, ``target_lang`` first (``target_langs`` is empty
    in records written before it existed, and where one target is wanted)."""
    return list(target_langs) if target_langs else [target_lang] if target_lang else []


def utterance_id(session_id: str, index: int, epoch: int = 0) -> str:
    """The utterance's identity, never reused: ``<session>:<index>``, or ``<session>:<epoch>:<index>`` for
    the audio of a connection with an epoch (two connections of one session never share an id)."""
    return f"{session_id}:{epoch}:{index}" if epoch else f"{session_id}:{index}"


class AudioEventKind(StrEnum):
    CHUNK = "CHUNK"
    END = "END"
    PAUSE = "PAUSE"  # speech paused: the utterance may end (a worker may decode it speculatively)


class ResultKind(StrEnum):
    REALTIME = "REALTIME"
    FINAL = "FINAL"
    TRANSLATION = "TRANSLATION"
    ERROR = "ERROR"


@dataclass(slots=True)
class AudioEvent:
    SCHEMA: ClassVar[str] = "io.babelstream.audio.AudioEvent"

    session_id: str
    utterance_index: int
    seq: int
    kind: AudioEventKind
    pcm: bytes
    audio_offset_ms: int
    created_at_ms: int = field(default_factory=now_ms)
    sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ
    source_lang: str | None = None
    target_lang: str | None = None
    translate: bool = False
    end_reason: str | None = None
    gateway_id: str = ""
    utterance_id: str = ""
    speech_start_ms: int | None = None
    speech_end_ms: int | None = None
    realtime: bool = True  # the session wants interim results
    prompt: str | None = None  # the client's domain text and favoured words (first chunk of an utterance)
    hotwords: str | None = None
    target_langs: list[str] = field(default_factory=list)  # all targets, target_lang first

    def __post_init__(self) -> None:
        self.kind = AudioEventKind(self.kind)
        if not self.utterance_id:
            self.utterance_id = utterance_id(self.session_id, self.utterance_index)

    @property
    def targets(self) -> list[str]:
        return wanted_targets(self.target_lang, self.target_langs)

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) * 1000 // (2 * self.sample_rate_hz)

    def to_avro(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = str(self.kind)
        return d

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> AudioEvent:
        ev = cls(**d)
        ev.check()
        return ev

    def check(self) -> None:
        """Raise ValueError for an event no consumer can use (read from Kafka, so possibly hostile)."""
        problems = _negative(self, "seq", "utterance_index", "audio_offset_ms", "speech_start_ms", "speech_end_ms")
        if not self.session_id:
            problems.append("empty session_id")
        if self.sample_rate_hz != AUDIO_SAMPLE_RATE_HZ:
            problems.append(f"sample_rate_hz={self.sample_rate_hz}; audio events are {AUDIO_SAMPLE_RATE_HZ} Hz")
        if len(self.pcm) % 2:
            problems.append(f"{len(self.pcm)} bytes of PCM16 is not a whole number of samples")
        _check(problems)


@dataclass(slots=True)
class Segment:
    start_ms: int
    end_ms: int
    text: str


@dataclass(slots=True)
class Translation:
    source_lang: str
    target_lang: str
    text: str
    backend: str


@dataclass(slots=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(slots=True)
class Result:
    SCHEMA: ClassVar[str] = "io.babelstream.results.Result"

    session_id: str
    utterance_index: int
    kind: ResultKind
    text: str = ""
    seq: int = 0
    language: str | None = None
    language_probability: float | None = None
    audio_start_ms: int = 0
    audio_end_ms: int = 0
    processing_ms: int = 0
    created_at_ms: int = field(default_factory=now_ms)
    audio_created_at_ms: int = 0
    model: str = ""
    version: str = "live"
    target_lang: str | None = None
    translate: bool = False
    segments: list[Segment] = field(default_factory=list)
    translation: Translation | None = None
    error: ErrorInfo | None = None
    utterance_id: str = ""
    target_langs: list[str] = field(default_factory=list)  # all targets, target_lang first

    def __post_init__(self) -> None:
        self.kind = ResultKind(self.kind)
        if not self.utterance_id:
            self.utterance_id = utterance_id(self.session_id, self.utterance_index)

    @property
    def targets(self) -> list[str]:
        return wanted_targets(self.target_lang, self.target_langs)

    def to_avro(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = str(self.kind)
        return d

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> Result:
        d = dict(d)
        d["segments"] = [Segment(**s) for s in d.get("segments") or []]
        if d.get("translation"):
            d["translation"] = Translation(**d["translation"])
        if d.get("error"):
            d["error"] = ErrorInfo(**d["error"])
        result = cls(**d)
        result.check()
        return result

    def check(self) -> None:
        """Raise ValueError for a result no gateway or reader can use (read from Kafka, so possibly hostile)."""
        problems = _negative(self, "utterance_index", "seq", "audio_start_ms", "audio_end_ms", "processing_ms")
        if not self.session_id:
            problems.append("empty session_id")
        if self.audio_end_ms < self.audio_start_ms:
            problems.append(f"audio_end_ms={self.audio_end_ms} is before audio_start_ms={self.audio_start_ms}")
        if self.language_probability is not None and not 0.0 <= self.language_probability <= 1.0:
            problems.append(f"language_probability={self.language_probability} is not a probability")
        if not self.version:
            problems.append("empty version")
        for sg in self.segments:
            if sg.start_ms < 0 or sg.end_ms < sg.start_ms:
                problems.append(f"segment {sg.start_ms}..{sg.end_ms} ms is not a time range")
                break
        if self.kind is ResultKind.ERROR and self.error is None:
            problems.append("an ERROR result without its error")
        if self.kind is ResultKind.TRANSLATION and self.translation is None:
            problems.append("a TRANSLATION result without its translation")
        _check(problems)


@dataclass(slots=True)
class SessionState:
    SCHEMA: ClassVar[str] = "io.babelstream.sessions.SessionState"

    session_id: str
    gateway_id: str
    input_sample_rate_hz: int
    next_utterance_index: int
    source_lang: str | None = None
    target_lang: str | None = None
    translate: bool = False
    channels: int = 1
    encoding: str = "pcm_s16le"
    audio_ms_total: int = 0
    created_at_ms: int = field(default_factory=now_ms)
    updated_at_ms: int = field(default_factory=now_ms)
    connected: bool = True
    epoch: int = 0
    open_utterance_index: int | None = None
    resume_token_sha256: str | None = None
    owner: str | None = None  # who started it: a key's name or a JWT's subject
    prompt: str | None = None
    hotwords: str | None = None
    target_langs: list[str] = field(default_factory=list)  # all targets, target_lang first
    broadcast_id: str | None = None  # the session is broadcast: viewers watch it by this id
    viewer_token_sha256: str | None = None  # the viewers' read-only token's digest (None: a public broadcast)
    broadcast_ended: bool = False  # the speaker ended the broadcast

    @property
    def targets(self) -> list[str]:
        return wanted_targets(self.target_lang, self.target_langs)

    def to_avro(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> SessionState:
        state = cls(**d)
        state.check()
        return state

    def check(self) -> None:
        """Raise ValueError for a state no gateway can resume (read from Kafka, so possibly hostile)."""
        problems = _negative(self, "next_utterance_index", "audio_ms_total", "epoch", "open_utterance_index")
        if not self.session_id:
            problems.append("empty session_id")
        if not 0 < self.input_sample_rate_hz <= MAX_INPUT_RATE_HZ:
            problems.append(f"input_sample_rate_hz={self.input_sample_rate_hz} is no sample rate")
        if not 1 <= self.channels <= MAX_CHANNELS:
            problems.append(f"channels={self.channels} is not 1..{MAX_CHANNELS}")
        if self.encoding not in get_args(Encoding):
            problems.append(f"encoding={self.encoding!r} is not one of {', '.join(get_args(Encoding))}")
        if self.broadcast_id is None and (self.viewer_token_sha256 is not None or self.broadcast_ended):
            problems.append("a viewer token or an ended broadcast without a broadcast_id")
        if self.broadcast_id is not None and not 0 < len(self.broadcast_id) <= 64:
            problems.append(f"broadcast_id of {len(self.broadcast_id)} characters")
        _check(problems)


MAX_AUDIENCE_LANGS = 64  # more languages than any gateway's MAX_BROADCAST_LANGS can mean


@dataclass(slots=True)
class WatchedLang:
    lang: str  # "" is the speaker's own language (never translated)
    viewers: int  # on the writing gateway now (0: nobody, kept for the grace period)
    watched_at_ms: int  # last watched there


@dataclass(slots=True)
class Audience:
    """The viewers one gateway serves of one broadcast, by language (``schemas/audience.avsc``)."""

    SCHEMA: ClassVar[str] = "io.babelstream.broadcasts.Audience"

    broadcast_id: str
    session_id: str
    gateway_id: str
    langs: list[WatchedLang]
    updated_at_ms: int = field(default_factory=now_ms)

    @property
    def key(self) -> str:
        return audience_key(self.broadcast_id, self.gateway_id)

    def to_avro(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_avro(cls, d: dict[str, Any]) -> Audience:
        audience = cls(**{**d, "langs": [WatchedLang(**x) for x in d["langs"]]})
        audience.check()
        return audience

    def check(self) -> None:
        problems = []
        if not self.broadcast_id or not self.session_id or not self.gateway_id:
            problems.append("an empty broadcast_id, session_id or gateway_id")
        if len(self.langs) > MAX_AUDIENCE_LANGS:
            problems.append(f"{len(self.langs)} languages (at most {MAX_AUDIENCE_LANGS})")
        if any(x.viewers < 0 or len(x.lang) > 16 for x in self.langs):
            problems.append("a language with negative viewers or a code over 16 characters")
        _check(problems)


def audience_key(broadcast_id: str, gateway_id: str) -> str:
    return f"{broadcast_id}@{gateway_id}"
