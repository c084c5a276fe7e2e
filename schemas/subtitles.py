"""Transcripts as subtitles, pure: timed cues from finals (their timed segments, or the whole final), and
SRT and WebVTT text. Shared by ``babelstream export`` (Kafka records) and the OpenAI-compatible API (the
messages a session received): both hold finals with the same fields."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Cue:
    """One timed piece of a transcript, in ms of session audio."""

    start_ms: int
    end_ms: int
    text: str


class TimedText(Protocol):
    @property
    def start_ms(self) -> int: ...
    @property
    def end_ms(self) -> int: ...
    @property
    def text(self) -> str: ...


class FinalLike(Protocol):
    """A ``Result`` record or a ``final`` message."""

    @property
    def audio_start_ms(self) -> int: ...
    @property
    def audio_end_ms(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def segments(self) -> Sequence[TimedText]: ...


def transcript_cues(finals: Iterable[FinalLike]) -> list[Cue]:
    """Each final's timed segments, or the whole final over its audio when it has none; empty text skipped."""
    cues = []
    for f in finals:
        if f.segments:
            cues += [Cue(s.start_ms, s.end_ms, s.text.strip()) for s in f.segments if s.text.strip()]
        elif f.text.strip():
            cues.append(Cue(f.audio_start_ms, f.audio_end_ms, f.text.strip()))
    return cues


def timestamp(ms: int, sep: str) -> str:
    h, rest = divmod(max(0, ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Iterable[Cue]) -> str:
    return "".join(
        f"{i}\n{timestamp(c.start_ms, ',')} --> {timestamp(c.end_ms, ',')}\n{c.text}\n\n"
        for i, c in enumerate(cues, start=1)
    )


def to_vtt(cues: Iterable[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{timestamp(c.start_ms, '.')} --> {timestamp(c.end_ms, '.')}\n{c.text}\n\n" for c in cues
    )
