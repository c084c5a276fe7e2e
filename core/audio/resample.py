"""Streaming conversion of client audio (any rate, 1..N channels, PCM16 or float32) to 16 kHz mono PCM16.

Uses soxr's streaming resampler, so chunk boundaries leave no clicks and no samples are lost.
"""

from __future__ import annotations

import numpy as np
import soxr

from schemas.errors import BabelstreamError
from schemas.records import AUDIO_SAMPLE_RATE_HZ, Encoding

_SAMPLE_BYTES: dict[str, int] = {"pcm_s16le": 2, "pcm_f32le": 4}


class AudioFormatError(BabelstreamError, ValueError):
    """Audio that is not what its format says (a frame that is not whole samples, an odd layout)."""


class StreamResampler:
    def __init__(self, in_rate_hz: int, channels: int = 1, encoding: Encoding = "pcm_s16le") -> None:
        if encoding not in _SAMPLE_BYTES:
            raise AudioFormatError(f"unsupported encoding {encoding!r}; use pcm_s16le or pcm_f32le")
        if channels < 1:
            raise AudioFormatError("channels must be at least 1")
        self.in_rate_hz = in_rate_hz
        self.channels = channels
        self.encoding = encoding
        self.frame_bytes = _SAMPLE_BYTES[encoding] * channels
        self._carry = b""
        self._stream = (
            None
            if in_rate_hz == AUDIO_SAMPLE_RATE_HZ
            else soxr.ResampleStream(in_rate_hz, AUDIO_SAMPLE_RATE_HZ, 1, dtype="float32", quality="HQ")
        )

    def _to_mono_float(self, data: bytes) -> np.ndarray:
        if self.encoding == "pcm_s16le":
            x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        else:
            x = np.frombuffer(data, dtype="<f4").astype(np.float32)
            if not np.all(np.isfinite(x)):
                raise AudioFormatError("float32 audio contains NaN or infinity")
        if self.channels > 1:
            x = x.reshape(-1, self.channels).mean(axis=1)
        return x

    def process(self, data: bytes, last: bool = False) -> bytes:
        """Convert a piece of the input stream; returns 16 kHz mono PCM16 bytes (maybe empty)."""
        data = self._carry + data
        usable = len(data) - len(data) % self.frame_bytes
        self._carry = data[usable:]
        x = self._to_mono_float(data[:usable])
        if self._stream is not None:
            x = self._stream.resample_chunk(x, last=last)
        return float_to_pcm16(x)

    def flush(self) -> bytes:
        """Drain the resampler's delay line; the stream can be used again afterwards."""
        self._carry = b""
        if self._stream is None:
            return b""
        out = self.process(b"", last=True)
        self._stream.clear()
        return out


def float_to_pcm16(x: np.ndarray) -> bytes:
    return bytes((np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def peak_normalize(x: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale so the loudest sample reaches ``peak`` (quiet microphones); silence is left as it is."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    return x if top < 1e-4 else (x * (peak / top)).astype(np.float32)


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
