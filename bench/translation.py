"""Speech translation to English: the pipeline's decode next to offline faster-whisper ``task=translate`` on
the same audio, in one run; prints a table.

    .venv/bin/python -m bench.translation [--prompts 8]   # from the repository root, after bin/test

Asterisk's telephone prompts in Spanish, French, Italian and Russian (8 kHz, resampled to 16 kHz as the
gateway does), scored with chrF against the English originals of the same prompts. "pipeline" is the STT
worker's final decode: one encoder pass, the transcript and the English from one ``generate``;
"offline" is faster-whisper's own ``transcribe(task="translate")``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import soxr
from rich.console import Console
from rich.table import Table

from babelstream.audio.resample import pcm16_to_float
from babelstream.engines.models import resolve_whisper_model
from babelstream.engines.stt import DecodeRequest
from babelstream.engines.whisper import WhisperEngine
from tests.audio import asterisk, chrf, translation_prompts

LANGS = ["es", "fr", "it", "ru"]


def prompt_audio(lang: str, name: str) -> np.ndarray:
    pcm, rate, _ = asterisk(lang, name)
    return soxr.resample(pcm16_to_float(pcm), rate, 16000).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=8, help="prompts per language")
    ap.add_argument("--model", default="base")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    engine = WhisperEngine(resolve_whisper_model(args.model, None), cpu_threads=args.threads)
    table = Table(title=f"Speech to English, Whisper {args.model} int8, {args.threads} threads, beam 5")
    for col in (
        "language",
        "prompts",
        "offline chrF",
        "pipeline chrF",
        "pipeline ÷ offline",
        "offline s",
        "pipeline s",
    ):
        table.add_column(col, justify="right")
    totals = [0.0, 0.0, 0.0, 0.0, 0]
    for lang in LANGS:
        items = translation_prompts(lang, args.prompts)
        offline = pipeline = offline_s = pipeline_s = 0.0
        for name, _, english in items:
            audio = prompt_audio(lang, name)
            t0 = time.perf_counter()
            segments, _ = engine.model.transcribe(
                audio, task="translate", beam_size=5, condition_on_previous_text=False
            )
            offline += chrf(english, " ".join(s.text.strip() for s in segments))
            t1 = time.perf_counter()
            t = engine.transcribe_batch([DecodeRequest(audio, None, True, english_unless=frozenset({"en"}))])[0]
            pipeline += chrf(english, t.english or "")
            offline_s, pipeline_s = offline_s + t1 - t0, pipeline_s + time.perf_counter() - t1
        n = len(items)
        for i, v in enumerate((offline, pipeline, offline_s, pipeline_s)):
            totals[i] += v
        totals[4] += n
        table.add_row(
            lang,
            str(n),
            f"{offline / n:.3f}",
            f"{pipeline / n:.3f}",
            f"{pipeline / offline:.2f}",
            f"{offline_s:.1f}",
            f"{pipeline_s:.1f}",
        )
    o, p, os_, ps, n = totals
    table.add_row("all", str(n), f"{o / n:.3f}", f"{p / n:.3f}", f"{p / o:.2f}", f"{os_:.1f}", f"{ps:.1f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
