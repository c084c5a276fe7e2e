"""The STT engine the settings ask for (kept apart from ``engines.stt``, which ``engines.whisper`` builds on:
no import circle)."""

from __future__ import annotations

from core.engines.stt import NullEngine, SttEngine
from core.settings import Settings


def make_stt_engine(s: Settings) -> SttEngine:
    if s.stt_engine == "null":
        return NullEngine()
    from core.engines.whisper import WhisperEngine  # faster-whisper: loaded only when wanted

    return WhisperEngine.from_settings(s)
