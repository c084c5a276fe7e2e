"""Audio sources for the desktop client: a microphone (sounddevice/PortAudio) or a file (tests, demos)."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from schemas.records import AUDIO_BYTES_PER_MS, AUDIO_BYTES_PER_S, AUDIO_SAMPLE_RATE_HZ


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    default: bool


def list_input_devices() -> list[InputDevice]:
    import sounddevice as sd

    default = sd.default.device[0]
    return [
        InputDevice(i, d["name"], i == default) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0
    ]


class AudioSource(Protocol):
    sample_rate_hz: int

    def frames(self) -> AsyncIterator[bytes]: ...

    def stop(self) -> None: ...


class MicrophoneSource:
    """16 kHz mono PCM16 from an input device, 100 ms per block, bounded buffer (drops when full)."""

    sample_rate_hz = AUDIO_SAMPLE_RATE_HZ

    def __init__(self, device: int | None = None) -> None:
        self.device = device
        self._q: queue.Queue[bytes] = queue.Queue(maxsize=50)
        self._running = True

    async def frames(self) -> AsyncIterator[bytes]:
        import sounddevice as sd

        def callback(data: bytes, frames: int, t: object, status: object) -> None:
            try:
                self._q.put_nowait(bytes(data))
            except queue.Full:
                pass

        with sd.RawInputStream(
            samplerate=self.sample_rate_hz,
            channels=1,
            dtype="int16",
            device=self.device,
            blocksize=self.sample_rate_hz // 10,
            callback=callback,
        ):
            while self._running:
                try:
                    yield self._q.get_nowait()
                except queue.Empty:
                    await asyncio.sleep(0.02)

    def stop(self) -> None:
        self._running = False


class FileSource:
    """Any audio file (decoded with PyAV) played at ``pace`` x real time."""

    sample_rate_hz = AUDIO_SAMPLE_RATE_HZ

    def __init__(self, path: Path, pace: float = 1.0, trailing_silence_ms: int = 2000) -> None:
        from faster_whisper.audio import decode_audio

        from core.audio.resample import float_to_pcm16

        self.pcm = float_to_pcm16(decode_audio(str(path), sampling_rate=AUDIO_SAMPLE_RATE_HZ))
        self.pcm += bytes(AUDIO_BYTES_PER_MS * trailing_silence_ms)
        self.pace = pace
        self._running = True

    async def frames(self) -> AsyncIterator[bytes]:
        step = AUDIO_BYTES_PER_S // 10
        t0 = time.monotonic()
        for i, off in enumerate(range(0, len(self.pcm), step)):
            if not self._running:
                return
            yield self.pcm[off : off + step]
            if self.pace > 0:
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.1 / self.pace - time.monotonic()))

    def stop(self) -> None:
        self._running = False
