"""Speech state machine: INACTIVE -> ACTIVE -> SILENCE -> INACTIVE, sans I/O.

Fed one VAD-labelled frame at a time, it emits append-only :class:`Chunk` events (``chunk_ms`` of new
audio each) and one :class:`End` per utterance:

* INACTIVE keeps a rolling ``pre_speech_ms`` buffer; ``min_speech_ms`` of consecutive speech opens an
  utterance that starts with that buffer (so word onsets are never clipped).
* ACTIVE appends audio; a non-speech frame moves to SILENCE.
* SILENCE appends audio; speech returns to ACTIVE, ``silence_ms`` of silence ends the utterance.
* An utterance reaching ``max_utterance_s`` is cut (reason ``max_length``) and, if speech goes on, a new
  one starts at once without pre-roll so no audio is lost or duplicated.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from core.settings import Settings
from schemas.records import AUDIO_SAMPLE_RATE_HZ, PCM16_SAMPLE_BYTES


class State(StrEnum):
    INACTIVE = "INACTIVE"
    ACTIVE = "ACTIVE"
    SILENCE = "SILENCE"


@dataclass(frozen=True, slots=True)
class Chunk:
    utterance_index: int
    seq: int
    pcm: bytes
    offset_ms: int
    speech_start_ms: int | None = None  # the first chunk: where in the utterance the VAD heard speech begin


@dataclass(frozen=True, slots=True)
class End:
    utterance_index: int
    seq: int
    offset_ms: int
    reason: str
    duration_ms: int
    speech_start_ms: int = 0  # within the utterance: where the VAD heard speech begin...
    speech_end_ms: int = 0  # ...and end (the pre-roll before and the closing silence after are not speech)


@dataclass(frozen=True, slots=True)
class Pause:
    """``pause_ms`` of silence after speech: the utterance may be about to end (all its audio so far has
    been emitted as chunks). Emitted once per pause; speech may still resume."""

    utterance_index: int
    seq: int
    offset_ms: int
    speech_start_ms: int
    speech_end_ms: int


SegmentEvent = Chunk | Pause | End


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    frame_ms: int = 30
    pre_speech_ms: int = 1000
    min_speech_ms: int = 150
    silence_ms: int = 600
    max_utterance_ms: int = 15000
    chunk_ms: int = 500
    sample_rate_hz: int = AUDIO_SAMPLE_RATE_HZ
    pause_ms: int = 0  # 0: no Pause events

    @classmethod
    def from_settings(cls, s: Settings) -> SegmenterConfig:
        return cls(
            s.vad_frame_ms,
            s.pre_speech_ms,
            s.min_speech_ms,
            s.silence_ms,
            int(s.max_utterance_s * 1000),
            s.chunk_ms,
            pause_ms=s.pause_ms,
        )


class Segmenter:
    def __init__(self, config: SegmenterConfig, first_utterance_index: int = 0, start_offset_ms: int = 0):
        self.cfg = config
        self.state = State.INACTIVE
        self.next_index = first_utterance_index
        self._bytes_per_ms = config.sample_rate_hz * PCM16_SAMPLE_BYTES // 1000
        self._pre: deque[bytes] = deque(maxlen=max(1, config.pre_speech_ms // config.frame_ms))
        self._speech_run_ms = 0
        self._silence_run_ms = 0
        self._clock_ms = start_offset_ms  # session audio time at the end of the last frame
        self._utt_index = -1
        self._utt_start_ms = 0
        self._utt_ms = 0
        self._seq = 0
        self._pending = bytearray()
        self._pending_offset_ms = 0
        self._speech_start_ms = 0
        self._speech_end_ms = 0

    @property
    def in_utterance(self) -> bool:
        return self.state is not State.INACTIVE

    @property
    def clock_ms(self) -> int:
        return self._clock_ms

    def push(self, frame: bytes, speech: bool) -> list[SegmentEvent]:
        out: list[SegmentEvent] = []
        frame_ms = len(frame) // self._bytes_per_ms
        self._clock_ms += frame_ms
        if self.state is State.INACTIVE:
            self._pre.append(frame)
            self._speech_run_ms = self._speech_run_ms + frame_ms if speech else 0
            if self._speech_run_ms >= self.cfg.min_speech_ms:
                pre = b"".join(self._pre)
                self._pre.clear()
                pre_ms = len(pre) // self._bytes_per_ms
                self._open(self._clock_ms - pre_ms)
                self._speech_start_ms = max(0, pre_ms - self._speech_run_ms)
                self._append(pre, out)
                self._speech_end_ms = self._utt_ms
                self.state = State.ACTIVE
            return out

        self._append(frame, out)
        if speech:
            self.state, self._silence_run_ms = State.ACTIVE, 0
            self._speech_end_ms = self._utt_ms
        else:
            self.state = State.SILENCE
            before_ms = self._silence_run_ms
            self._silence_run_ms += frame_ms
            if self._silence_run_ms >= self.cfg.silence_ms:
                self._close("silence", out)
                return out
            if 0 < self.cfg.pause_ms <= self._silence_run_ms and before_ms < self.cfg.pause_ms:
                self._pause(out)
        if self._utt_ms >= self.cfg.max_utterance_ms:
            was_speech = self.state is State.ACTIVE
            self._close("max_length", out)
            if was_speech:
                self._open(self._clock_ms)
                self.state = State.ACTIVE  # speech goes on from its first millisecond
        return out

    def flush(self, reason: str = "flush") -> list[SegmentEvent]:
        """End the open utterance (client stop/flush or disconnect); no-op when INACTIVE."""
        out: list[SegmentEvent] = []
        if self.in_utterance:
            self._close(reason, out)
        return out

    # -- internals ------------------------------------------------------------------------------
    def _open(self, start_ms: int) -> None:
        self._utt_index = self.next_index
        self.next_index += 1
        self._utt_start_ms = start_ms
        self._utt_ms = 0
        self._seq = 0
        self._pending.clear()
        self._pending_offset_ms = start_ms
        self._silence_run_ms = 0
        self._speech_start_ms = 0
        self._speech_end_ms = 0

    def _append(self, pcm: bytes, out: list[SegmentEvent]) -> None:
        self._pending += pcm
        self._utt_ms += len(pcm) // self._bytes_per_ms
        chunk_bytes = self.cfg.chunk_ms * self._bytes_per_ms
        while len(self._pending) >= chunk_bytes:
            self._emit(bytes(self._pending[:chunk_bytes]), out)
            del self._pending[:chunk_bytes]

    def _emit(self, pcm: bytes, out: list[SegmentEvent]) -> None:
        onset_ms = self._speech_start_ms if self._seq == 0 else None
        out.append(Chunk(self._utt_index, self._seq, pcm, self._pending_offset_ms, onset_ms))
        self._seq += 1
        self._pending_offset_ms += len(pcm) // self._bytes_per_ms

    def _pause(self, out: list[SegmentEvent]) -> None:
        if self._pending:  # everything so far goes out now, so the pause covers all of it
            self._emit(bytes(self._pending), out)
            self._pending.clear()
        out.append(Pause(self._utt_index, self._seq, self._clock_ms, self._speech_start_ms, self._speech_end_ms))
        self._seq += 1

    def _close(self, reason: str, out: list[SegmentEvent]) -> None:
        if self._pending:
            self._emit(bytes(self._pending), out)
            self._pending.clear()
        speech_end_ms = self._utt_ms if self.state is State.ACTIVE else self._speech_end_ms
        out.append(
            End(self._utt_index, self._seq, self._clock_ms, reason, self._utt_ms, self._speech_start_ms, speech_end_ms)
        )
        self.state = State.INACTIVE
        self._speech_run_ms = 0
        self._silence_run_ms = 0
