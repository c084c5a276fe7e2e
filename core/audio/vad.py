"""Dual voice activity detection on 16 kHz mono PCM16 frames: webrtcvad + Silero (ONNX), combined by vote.

No I/O beyond loading the ONNX model once; every call is a pure function of the audio so far.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

from core.audio.resample import pcm16_to_float
from core.settings import Settings, VadVote
from schemas.records import AUDIO_BYTES_PER_MS, AUDIO_SAMPLE_RATE_HZ


def find_silero_model(explicit: Path | None = None) -> Path:
    """The Silero ONNX file: an explicit path, else the one shipped in faster-whisper or silero-vad."""
    if explicit is not None:
        if not explicit.is_file():
            raise FileNotFoundError(f"SILERO_MODEL_PATH {explicit} does not exist")
        return explicit
    candidates: list[Path] = []
    for pkg, rel in (("faster_whisper", "assets/silero_vad_v6.onnx"), ("silero_vad", "data/silero_vad.onnx")):
        spec = importlib.util.find_spec(pkg)  # locate without importing (silero_vad imports torch)
        if spec is not None and spec.submodule_search_locations:
            candidates += [Path(p) / rel for p in spec.submodule_search_locations]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("no Silero VAD ONNX model found; install faster-whisper or set SILERO_MODEL_PATH")


@cache
def _onnx_session(path: Path) -> Any:
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class SileroVad:
    """Streaming Silero VAD: 512-sample windows with 64 samples of context and recurrent state."""

    WINDOW = 512
    CONTEXT = 64

    def __init__(self, model_path: Path | None = None) -> None:
        # one ONNX session per model file, shared by every stream (the recurrent state is per stream)
        self._session = _onnx_session(find_silero_model(model_path))
        names = {i.name for i in self._session.get_inputs()}
        self._v5 = "state" in names  # silero-vad package model: (input, state, sr)
        self.reset()

    def reset(self) -> None:
        if self._v5:
            self._state = np.zeros((2, 1, 128), np.float32)
        else:
            self._h = np.zeros((1, 1, 128), np.float32)
            self._c = np.zeros((1, 1, 128), np.float32)
        self._context = np.zeros(self.CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self.probability = 0.0

    def _window(self, x: np.ndarray) -> float:
        inp = np.concatenate([self._context, x])[None, :]
        self._context = x[-self.CONTEXT :]
        if self._v5:
            out, self._state = self._session.run(
                None, {"input": inp, "state": self._state, "sr": np.array(AUDIO_SAMPLE_RATE_HZ, np.int64)}
            )
        else:
            out, self._h, self._c = self._session.run(None, {"input": inp, "h": self._h, "c": self._c})
        return float(np.asarray(out).reshape(-1)[0])

    def process(self, samples: np.ndarray) -> float:
        """Feed audio; returns the newest speech probability (unchanged if no full window yet)."""
        self._pending = np.concatenate([self._pending, samples])
        while len(self._pending) >= self.WINDOW:
            self.probability = self._window(self._pending[: self.WINDOW])
            self._pending = self._pending[self.WINDOW :]
        return self.probability


@dataclass(frozen=True, slots=True)
class VadDecision:
    webrtc: bool
    silero_probability: float
    speech: bool


class DualVad:
    def __init__(
        self,
        frame_ms: int = 30,
        webrtc_sensitivity: int = 2,
        silero_threshold: float = 0.5,
        vote: VadVote = "both",
        silero: SileroVad | None = None,
    ) -> None:
        if frame_ms not in (10, 20, 30):
            raise ValueError("webrtcvad frames must be 10, 20 or 30 ms")
        self.frame_ms = frame_ms
        self.frame_bytes = AUDIO_BYTES_PER_MS * frame_ms
        self.vote = vote
        self.silero_threshold = silero_threshold
        self._webrtc = webrtcvad.Vad(webrtc_sensitivity)
        self._silero = silero if silero is not None or vote == "webrtc" else SileroVad()

    @classmethod
    def from_settings(cls, s: Settings, silero: SileroVad | None = None) -> DualVad:
        if silero is None and s.vad_vote != "webrtc":
            silero = SileroVad(s.silero_model_path)
        return cls(s.vad_frame_ms, s.webrtc_sensitivity, s.silero_threshold, s.vad_vote, silero)

    def reset(self) -> None:
        if self._silero is not None:
            self._silero.reset()

    def __call__(self, frame: bytes) -> VadDecision:
        if len(frame) != self.frame_bytes:
            raise ValueError(f"VAD frame must be {self.frame_bytes} bytes, got {len(frame)}")
        w = self._webrtc.is_speech(frame, AUDIO_SAMPLE_RATE_HZ)
        p = self._silero.process(pcm16_to_float(frame)) if self._silero is not None else 0.0
        s = p >= self.silero_threshold
        speech = {"both": w and s, "any": w or s, "webrtc": w, "silero": s}[self.vote]
        return VadDecision(w, p, speech)
