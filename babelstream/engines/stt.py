"""Speech-to-text engines. Pure compute: numpy audio in, text out; callers run them in a thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from babelstream.engines.models import resolve_whisper_model
from babelstream.settings import Settings


@dataclass(frozen=True, slots=True)
class TimedText:
    start_ms: int
    end_ms: int
    text: str


@dataclass(frozen=True, slots=True)
class Transcription:
    text: str
    language: str | None
    language_probability: float | None
    segments: list[TimedText] = field(default_factory=list)
    processing_ms: int = 0


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What the client told us to expect: ``prompt`` (domain text, names, spelling: Whisper's initial
    prompt) and ``hotwords`` (words to favour)."""

    prompt: str | None = None
    hotwords: str | None = None

    def __bool__(self) -> bool:
        return bool(self.prompt or self.hotwords)


NO_VOCABULARY = Vocabulary()


def looks_degenerate(text: str) -> bool:
    """Whisper stuck in a loop (a prompt or hotwords can do that): a word three times running, or few
    distinct words in a longer text."""
    words = [w.strip(".,!?;:").lower() for w in text.split()]
    if any(a == b == c for a, b, c in zip(words, words[1:], words[2:], strict=False)):
        return True
    return len(words) >= 8 and len(set(words)) / len(words) < 0.35


class SttEngine(Protocol):
    name: str

    def transcribe(
        self, audio: np.ndarray, *, language: str | None, final: bool, vocabulary: Vocabulary = NO_VOCABULARY
    ) -> Transcription: ...


class WhisperEngine:
    """faster-whisper; the segment generator is consumed here, inside the caller's thread."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 5,
        interim_beam_size: int = 1,
        vad_filter: bool = False,
        name: str | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(model, device=device, compute_type=compute_type, cpu_threads=cpu_threads)
        self.name = name or model
        self.beam_size = beam_size
        self.interim_beam_size = interim_beam_size
        self.vad_filter = vad_filter
        self.multilingual = self.model.model.is_multilingual
        self._lock = threading.Lock()  # one decode at a time per model instance keeps latency predictable

    @classmethod
    def from_settings(cls, s: Settings) -> WhisperEngine:
        return cls(
            resolve_whisper_model(s.model_size, s.model_path),
            device=s.device,
            compute_type=s.compute_type,
            cpu_threads=s.cpu_threads,
            beam_size=s.beam_size,
            interim_beam_size=s.interim_beam_size,
            vad_filter=s.vad_filter,
            name=f"faster-whisper:{s.model_path or s.model_size}",
        )

    def transcribe(
        self, audio: np.ndarray, *, language: str | None, final: bool, vocabulary: Vocabulary = NO_VOCABULARY
    ) -> Transcription:
        t0 = time.perf_counter()
        if not self.multilingual:
            language = "en"
        parts, info = self._decode(audio, language, final, vocabulary)
        if vocabulary and looks_degenerate(" ".join(p.text for p in parts)):
            parts, info = self._decode(audio, language, final, NO_VOCABULARY)  # the vocabulary made it loop
        text = " ".join(p.text for p in parts if p.text)
        return Transcription(
            text=text,
            language=info.language,
            language_probability=float(info.language_probability),
            segments=parts,
            processing_ms=int((time.perf_counter() - t0) * 1000),
        )

    def _decode(
        self, audio: np.ndarray, language: str | None, final: bool, vocabulary: Vocabulary
    ) -> tuple[list[TimedText], Any]:
        with self._lock:
            segments, info = self.model.transcribe(
                audio,
                language=language,
                beam_size=self.beam_size if final else self.interim_beam_size,
                vad_filter=self.vad_filter,
                condition_on_previous_text=False,
                temperature=0.0 if not final else (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                without_timestamps=not final,
                initial_prompt=vocabulary.prompt,
                hotwords=vocabulary.hotwords,
            )
            return [TimedText(int(sg.start * 1000), int(sg.end * 1000), sg.text.strip()) for sg in segments], info


class NullEngine:
    """Returns a fixed text at once: measures the pipeline's own overhead in benchmarks and tests."""

    name = "null"

    def transcribe(
        self, audio: np.ndarray, *, language: str | None, final: bool, vocabulary: Vocabulary = NO_VOCABULARY
    ) -> Transcription:
        seconds = len(audio) / 16000
        text = f"{'final' if final else 'partial'} {seconds:.2f} seconds"
        return Transcription(text, language or "en", 1.0, [TimedText(0, int(seconds * 1000), text)], 0)


def make_stt_engine(s: Settings) -> SttEngine:
    return NullEngine() if s.stt_engine == "null" else WhisperEngine.from_settings(s)
