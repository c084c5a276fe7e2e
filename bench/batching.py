"""Batched decoding on this machine: throughput and latency per batch size; prints a table.

    .venv/bin/python -m bench.batching [--sizes 1,2,4,8] [--device cpu|cuda]   # after bin/test

The five LibriVox utterances (``bench.accuracy``) are decoded as the STT worker decodes them, in batches of
each size (items of different sessions: the utterances repeated), for finals (beam 5) and interims
(greedy), with the encoder window the worker uses and with Whisper's full 30 s window. Reported: audio
seconds decoded per second (throughput) and seconds per batch (the latency every item in it sees), next
to batch size 1 of the same rows as the reference.
"""

from __future__ import annotations

import argparse
import itertools
import time

from rich.console import Console
from rich.table import Table

from babelstream.engines.models import resolve_whisper_model
from babelstream.engines.stt import DecodeRequest
from babelstream.engines.whisper import WhisperEngine
from bench.accuracy import five_clip_stream, utterances


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--model", default="base")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--items", type=int, default=8, help="decodes per measurement (rounded up to whole batches)")
    args = ap.parse_args()
    engine = WhisperEngine(
        resolve_whisper_model(args.model, None),
        device=args.device,
        compute_type=args.compute_type,
        cpu_threads=args.threads,
    )
    audios = [u.audio() for u in utterances(five_clip_stream()[0])]
    sizes = [int(x) for x in args.sizes.split(",")]
    table = Table(
        title=f"Batched decoding, Whisper {args.model} {args.compute_type} on {args.device}, {args.threads} threads"
    )
    for col in ("decode", "encoder window", "batch", "audio s / s", "vs batch 1", "s per batch"):
        table.add_column(col, justify="right")
    for final, pad_ms in itertools.product((True, False), (-1, 2000)):
        engine.encoder_pad_ms = engine.interim_encoder_pad_ms = pad_ms
        engine.transcribe_batch([DecodeRequest(audios[0], "en", final)])  # warm up
        base = 0.0
        for size in sizes:
            batches = -(-args.items // size)
            items = [audios[i % len(audios)] for i in range(batches * size)]
            t0 = time.perf_counter()
            for b in range(batches):
                engine.transcribe_batch([DecodeRequest(a, "en", final) for a in items[b * size : (b + 1) * size]])
            took_s = time.perf_counter() - t0
            rate = sum(len(a) for a in items) / 16000 / took_s
            base = base or rate
            table.add_row(
                "final, beam 5" if final else "interim, greedy",
                "30 s" if pad_ms < 0 else f"utterance + {pad_ms} ms",
                str(size),
                f"{rate:.2f}",
                f"{rate / base:.2f}",
                f"{took_s / batches:.2f}",
            )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
