"""Client audio in, speech segments out: resampler -> fixed VAD frames -> dual VAD -> segmenter. No I/O."""

from __future__ import annotations

from core.audio.resample import StreamResampler
from core.audio.segmenter import Segmenter, SegmenterConfig, SegmentEvent
from core.audio.vad import DualVad
from schemas.records import Encoding


class SpeechPipeline:
    def __init__(
        self,
        vad: DualVad,
        segmenter_config: SegmenterConfig,
        in_rate_hz: int,
        channels: int = 1,
        encoding: Encoding = "pcm_s16le",
        first_utterance_index: int = 0,
        start_offset_ms: int = 0,
    ) -> None:
        self.vad = vad
        self.resampler = StreamResampler(in_rate_hz, channels, encoding)
        self.segmenter = Segmenter(segmenter_config, first_utterance_index, start_offset_ms)
        self._buf = bytearray()
        self.speech_frames = 0
        self.frames = 0

    def feed(self, data: bytes) -> list[SegmentEvent]:
        return self._frames(self.resampler.process(data))

    def _frames(self, pcm16k: bytes) -> list[SegmentEvent]:
        self._buf += pcm16k
        out: list[SegmentEvent] = []
        n = self.vad.frame_bytes
        while len(self._buf) >= n:
            frame = bytes(self._buf[:n])
            del self._buf[:n]
            decision = self.vad(frame)
            self.frames += 1
            self.speech_frames += decision.speech
            out += self.segmenter.push(frame, decision.speech)
        return out

    def flush(self, reason: str = "flush") -> list[SegmentEvent]:
        """Drain the resampler, then close the open utterance (if any)."""
        out = self._frames(self.resampler.flush())
        self._buf.clear()  # less than one VAD frame (< 30 ms) is dropped
        out += self.segmenter.flush(reason)
        return out
