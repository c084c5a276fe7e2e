"""The benchmarks' reference decode: faster-whisper's own ``transcribe``, light to import (no test data,
no gateway), so that ``bench.batching`` runs on a machine with only the engine."""

from __future__ import annotations

import numpy as np

from core.engines.whisper import WhisperEngine


def faster_whisper(engine: WhisperEngine, audio: np.ndarray, language: str | None, context: str | None = None) -> str:
    """The reference: faster-whisper's own ``transcribe`` (full 30 s windows), as the worker decoded before."""
    segments, _ = engine.model.transcribe(
        audio, language=language, beam_size=5, condition_on_previous_text=False, initial_prompt=context
    )
    return " ".join(sg.text.strip() for sg in segments)
