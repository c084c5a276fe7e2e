"""Concurrent sessions on one STT worker, with the references in the same run; prints a table.

    .venv/bin/python -m bench.sessions [--sessions 1,2,3,4]   # from the repository root, after bin/test

Each session streams the five-clip LibriVox stream (``bench.accuracy``) at real-time pace through a real
broker, gateway and one STT worker (Whisper base int8, 2 threads). Per session count: WER, first text
after speech start (utterance_start -> first realtime or final of that segment), final after speech end
(utterance_end -> final), overload errors. References, same run, same machine: offline faster-whisper on
the whole stream (WER), and the bare engine's finals-only throughput (audio seconds decoded per second:
the most real-time sessions this machine can carry with that model and beam).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from babelstream.client import StreamReport
from babelstream.load import percentiles, run_load
from bench.accuracy import five_clip_stream, utterances
from bench.reference import faster_whisper
from bench.run import start_stack
from core.audio.resample import pcm16_to_float
from core.engines.models import resolve_whisper_model
from core.engines.stt import DecodeRequest
from core.engines.whisper import WhisperEngine
from core.settings import load_settings
from schemas.records import AUDIO_BYTES_PER_S, AUDIO_SAMPLE_RATE_HZ
from streams.broker import LocalKafka
from tests.audio import wer


def latencies(rep: StreamReport) -> tuple[list[float], list[float]]:
    """(first text after speech start, final after speech end) per utterance of one session, in s."""
    first: dict[int, float] = {}
    for m in rep.messages:
        if m["type"] in ("realtime", "final"):
            first.setdefault(m["utterance_index"], m["_t"])
    starts = {m["utterance_index"]: m["_t"] for m in rep.of_type("utterance_start")}
    ends = {m["utterance_index"]: m["_t"] for m in rep.of_type("utterance_end")}
    finals = {m["utterance_index"]: m["_t"] for m in rep.of_type("final")}
    to_text = [first[i] - t for i, t in starts.items() if i in first]
    to_final = [finals[i] - t for i, t in ends.items() if i in finals]
    return to_text, to_final


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="1,2,3,4,5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--variants",
        default="ENCODER_PAD_MS=-1;ENCODER_PAD_MS=2000",
        help="worker settings to compare in this run, ';' between variants, ',' between settings",
    )
    args = ap.parse_args()
    pcm, ref = five_clip_stream()
    stream_s = len(pcm) / AUDIO_BYTES_PER_S

    engine = WhisperEngine(resolve_whisper_model("base", None), cpu_threads=args.threads, beam_size=5)
    offline_wer = wer(ref, faster_whisper(engine, pcm16_to_float(pcm), None))
    audios = [u.audio() for u in utterances(pcm)]
    limits = {}
    default_pad_ms = load_settings().encoder_pad_ms
    variants = {v: dict(kv.split("=", 1) for kv in v.split(",") if kv) for v in args.variants.split(";")}
    pads = {int(env.get("ENCODER_PAD_MS", default_pad_ms)) for env in variants.values()}
    for pad_ms in sorted({-1, default_pad_ms, *pads}):  # the engine decoding only the finals, language detected,
        # one at a time
        engine.encoder_pad_ms = pad_ms
        t0 = time.perf_counter()
        for audio in audios:
            engine.transcribe_batch([DecodeRequest(audio, None, True)])
        limits[pad_ms] = (
            sum(len(a) for a in audios) / AUDIO_SAMPLE_RATE_HZ / (time.perf_counter() - t0)
        )  # audio s per s
    del engine

    table = Table(title=f"Five-clip stream ({stream_s:.0f} s) per session, Whisper base int8, {args.threads} threads")
    cols = (
        "variant",
        "sessions",
        "WER",
        "first text p50/p90 (s)",
        "final after end p50/p90 (s)",
        "overload",
        "÷ limit",
    )
    for col in cols:
        table.add_column(col, justify="right")
    table.add_row("offline, whole stream", "-", f"{offline_wer:.3f}", "-", "-", "-", "-")
    for pad_ms, rate in limits.items():
        window = "30 s window" if pad_ms < 0 else f"utterance + {pad_ms} ms"
        table.add_row(f"bare engine, finals only, {window}: {rate:.2f} s audio/s", "-", "-", "-", "-", "-", "-")
    for i, (variant, env) in enumerate(variants.items()):
        limit = limits[int(env.get("ENCODER_PAD_MS", default_pad_ms))]
        run_variant(table, variant, env, pcm, ref, limit, [int(x) for x in args.sessions.split(",")], args.threads, i)
    Console(width=160).print(table)


def run_variant(
    table: Table,
    label: str,
    env: dict[str, str],
    pcm: bytes,
    ref: str,
    limit: float,
    counts: list[int],
    threads: int,
    i: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalKafka(Path(tmp) / "kafka", heap_mb=384) as k:
        st = start_stack(
            k.bootstrap, Path(tmp) / f"stack{i}", {"MODEL_SIZE": "base", "CPU_THREADS": str(threads), **env}
        )
        try:
            for n in counts:
                reports, failed = asyncio.run(run_load(st.ws_url, pcm, n, pace=1.0, stagger_s=0.5, timeout_s=600))
                wers = [wer(ref, r.text) for r in reports]
                to_text = [x for r in reports for x in latencies(r)[0]]
                to_final = [x for r in reports for x in latencies(r)[1]]
                t, f = percentiles(to_text), percentiles(to_final)
                overload = sum(1 for r in reports for m in r.of_type("error") if m["code"] == "overloaded")
                table.add_row(
                    label,
                    str(n),
                    f"{max(wers):.3f}" + (f" ({failed} failed)" if failed else ""),
                    f"{t.get('p50', float('nan')):.2f} / {t.get('p90', float('nan')):.2f}",
                    f"{f.get('p50', float('nan')):.2f} / {f.get('p90', float('nan')):.2f}",
                    str(overload),
                    f"{n / limit:.2f}",
                )
        finally:
            st.stop()


if __name__ == "__main__":
    main()
