"""Batched decoding on this machine: throughput, latency and words per batch size; prints a table.

    .venv/bin/python -m bench.batching [--sizes 1,2,4,8] [--device cpu|cuda]   # after bin/test
    .venv/bin/python -m bench.batching --save inputs.npz      # the audio, for a machine with no test data
    python -m bench.batching --inputs inputs.npz --device cuda --sizes 1,4,8,16 --items 32

The five LibriVox utterances (``bench.accuracy``) are decoded as the STT worker decodes them, in batches of
each size (items of different sessions: the utterances repeated), for finals (beam 5; language given,
with and without timestamps, language detected, and with Whisper's English as well) and interims
(greedy), with the encoder window the worker uses and with Whisper's full 30 s window. Reported per row:
audio seconds decoded per second at batch 1, each larger batch's throughput as a multiple of that, the
seconds one batch of the largest size takes (the latency every item in it sees), and the WER of the five
utterances' text at every size (a batch must not change the words). The reference row is offline
faster-whisper on the whole stream, same model, device and compute type, in the same run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.reference import faster_whisper
from core.engines.models import resolve_whisper_model
from core.engines.stt import DecodeRequest
from core.engines.whisper import WhisperEngine
from core.settings import load_settings
from schemas.records import AUDIO_SAMPLE_RATE_HZ
from tests.audio import wer


@dataclass(frozen=True)
class Inputs:
    utterances: list[np.ndarray]  # float32 16 kHz, as the worker assembles them
    stream: np.ndarray  # the whole five-clip stream, float32 16 kHz
    reference: str


@dataclass(frozen=True)
class Kind:
    label: str
    final: bool
    language: str | None
    english: bool = False  # Whisper's English too (task=translate on the same encoder output)
    timestamps: bool = True  # finals predict timestamps (FINAL_TIMESTAMPS)


KINDS = [
    Kind("final, beam 5", True, "en"),
    Kind("final, beam 5, no timestamps", True, "en", timestamps=False),
    Kind("final, beam 5, language detected", True, None),
    Kind("final, beam 5, language detected, no timestamps", True, None, timestamps=False),
    Kind("final + Whisper's English", True, None, english=True),
    Kind("final + Whisper's English, no timestamps", True, None, english=True, timestamps=False),
    Kind("interim, greedy", False, "en"),
]


def build_inputs() -> Inputs:
    from bench.accuracy import five_clip_stream, utterances
    from core.audio.resample import pcm16_to_float

    pcm, ref = five_clip_stream()
    return Inputs([u.audio() for u in utterances(pcm)], pcm16_to_float(pcm), ref)


def save_inputs(inputs: Inputs, path: Path) -> None:
    def pcm(a: np.ndarray) -> np.ndarray:
        return np.clip(np.round(a * 32768), -32768, 32767).astype(np.int16)  # exact: a is PCM / 32768

    arrays = {f"utterance_{i}": pcm(a) for i, a in enumerate(inputs.utterances)}
    np.savez_compressed(path, stream=pcm(inputs.stream), reference=np.array(inputs.reference), **arrays)


def load_inputs(path: Path) -> Inputs:
    with np.load(path) as z:
        n = sum(1 for k in z.files if k.startswith("utterance_"))
        audio = [z[f"utterance_{i}"].astype(np.float32) / 32768 for i in range(n)]
        return Inputs(audio, z["stream"].astype(np.float32) / 32768, str(z["reference"]))


def request(kind: Kind, audio: np.ndarray) -> DecodeRequest:
    return DecodeRequest(audio, kind.language, kind.final, english_unless=frozenset() if kind.english else None)


def measure(engine: WhisperEngine, kind: Kind, inputs: Inputs, size: int, items: int) -> tuple[float, float, float]:
    """(audio s per s, s per batch, WER of the five utterances) for batches of ``size``."""
    n = len(inputs.utterances)
    batches = -(-max(items, n) // size)
    audios = [inputs.utterances[i % n] for i in range(batches * size)]
    texts: list[str] = []
    t0 = time.perf_counter()
    for b in range(batches):
        out = engine.transcribe_batch([request(kind, a) for a in audios[b * size : (b + 1) * size]])
        texts += [t.text for t in out]
    took_s = time.perf_counter() - t0
    return (
        sum(map(len, audios)) / AUDIO_SAMPLE_RATE_HZ / took_s,
        took_s / batches,
        wer(inputs.reference, " ".join(texts[:n])),
    )


def offline(engine: WhisperEngine, inputs: Inputs) -> tuple[float, float]:
    """(WER, audio s per s) of faster-whisper's own transcribe on the whole stream."""
    t0 = time.perf_counter()
    text = faster_whisper(engine, inputs.stream, None)
    return wer(inputs.reference, text), len(inputs.stream) / AUDIO_SAMPLE_RATE_HZ / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,2,4,8")
    ap.add_argument("--model", default="base")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compute-type", default=None, help="default: int8 on cpu, float16 on cuda")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--items", type=int, default=8, help="decodes per measurement (rounded up to whole batches)")
    ap.add_argument("--inputs", type=Path, default=None, help="audio saved by --save (else built from test data)")
    ap.add_argument("--save", type=Path, default=None, help="write the inputs to this .npz and stop")
    ap.add_argument("--kinds", default=",".join(str(i) for i in range(len(KINDS))), help="rows of KINDS to run")
    args = ap.parse_args()
    inputs = load_inputs(args.inputs) if args.inputs else build_inputs()
    if args.save:
        save_inputs(inputs, args.save)
        return
    compute_type = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    t0 = time.perf_counter()
    engine = WhisperEngine(
        resolve_whisper_model(args.model, None), device=args.device, compute_type=compute_type, cpu_threads=args.threads
    )
    load_s = time.perf_counter() - t0
    sizes = [int(x) for x in args.sizes.split(",")]
    defaults = load_settings()  # the windows the worker uses
    table = Table(
        title=f"Batched decoding, Whisper {args.model} {compute_type} on {args.device}"
        + (f", {args.threads} threads" if args.device == "cpu" else "")
        + f" (model loaded in {load_s:.1f} s)"
    )
    for col in ("decode", "encoder window", f"batch {sizes[0]}", *(f"{s}" for s in sizes[1:])):
        table.add_column(col, justify="right")
    table.add_column(f"s per batch of {sizes[-1]}", justify="right")
    table.add_column("WER", justify="right")
    offline(engine, inputs)  # warm up
    offline_wer, offline_rate = offline(engine, inputs)
    table.add_row(
        "offline faster-whisper, whole stream",
        "30 s",
        f"{offline_rate:.2f} s/s",
        *[""] * (len(sizes) - 1),
        "-",
        f"{offline_wer:.3f}",
    )
    for kind in (KINDS[int(k)] for k in args.kinds.split(",")):
        worker_pad_ms = defaults.encoder_pad_ms if kind.final else defaults.interim_encoder_pad_ms
        for pad_ms in (-1, worker_pad_ms) if not kind.english else (-1,):  # English always gets the full window
            engine.encoder_pad_ms = engine.interim_encoder_pad_ms = pad_ms
            engine.final_timestamps = kind.timestamps
            engine.transcribe_batch([request(kind, inputs.utterances[0])])  # warm up
            rows = [measure(engine, kind, inputs, size, args.items) for size in sizes]
            wers = sorted({f"{w:.3f}" for _, _, w in rows})
            table.add_row(
                kind.label,
                "30 s" if pad_ms < 0 else f"utterance + {pad_ms} ms",
                f"{rows[0][0]:.2f} s/s",
                *(f"{r / rows[0][0]:.2f}x" for r, _, _ in rows[1:]),
                f"{rows[-1][1]:.2f}",
                wers[0] if len(wers) == 1 else f"{wers[0]} to {wers[-1]}",
            )
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
