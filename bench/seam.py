"""Words at a connection's cut: an utterance left inside a word, decoded apart from what follows, against
the seam rule (``core.audio.seam``) and the uncut sentence; prints a table.

    .venv/bin/python -m bench.seam        # from the repository root, after bin/test (test data)

Each LibriVox clip is cut in the middle of every other word (word times from faster-whisper's own
alignment of the whole clip); each cut is decoded three ways with the same engine in the same run: the
two halves apart (what a worker did before), the halves the seam rule makes (the head up to the last
quiet moment, the rest with the resumed speech), and the uncut clip (the reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.reference import faster_whisper
from core.audio.resample import pcm16_to_float
from core.audio.seam import seam_cut_ms
from core.engines.models import resolve_whisper_model
from core.engines.whisper import WhisperEngine
from schemas.records import AUDIO_SAMPLES_PER_MS
from tests.audio import librivox, librivox_transcripts, wer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="base")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    engine = WhisperEngine(resolve_whisper_model(args.model, None), cpu_threads=args.threads)

    def text(audio: np.ndarray) -> str:
        return faster_whisper(engine, audio, "en") if len(audio) else ""

    rows: dict[str, list[float]] = {"uncut": [], "apart": [], "seam": []}
    carried_all = cuts = 0
    started = time.monotonic()
    for clip, ref in sorted(librivox_transcripts().items()):
        audio = pcm16_to_float(librivox(clip)[0])
        segments, _ = engine.model.transcribe(audio, language="en", word_timestamps=True)
        words = [w for sg in segments for w in (sg.words or [])]
        whole = wer(ref, text(audio))
        for w in words[2:-1:2]:
            at = int((w.start + w.end) / 2 * 1000) * AUDIO_SAMPLES_PER_MS
            keep_ms = seam_cut_ms(audio[:at])
            keep = at if keep_ms is None else keep_ms * AUDIO_SAMPLES_PER_MS
            carried_all += keep == 0
            cuts += 1
            rows["uncut"].append(whole)
            rows["apart"].append(wer(ref, f"{text(audio[:at])} {text(audio[at:])}"))
            rows["seam"].append(wer(ref, f"{text(audio[:keep])} {text(audio[keep:])}"))
    table = Table(
        title=f"{cuts} cuts mid-word in {len(librivox_transcripts())} LibriVox clips, Whisper {args.model} int8,"
        f" {args.threads} threads ({time.monotonic() - started:.0f} s)"
    )
    for col in ("decoded", "WER mean", "÷ uncut", "cuts worse than uncut"):
        table.add_column(col, justify="right")
    base = float(np.mean(rows["uncut"]))
    for name, wers in rows.items():
        worse = sum(a > b + 1e-9 for a, b in zip(wers, rows["uncut"], strict=True))
        table.add_row(name, f"{np.mean(wers):.3f}", f"{np.mean(wers) / base:.2f}" if base else "-", str(worse))
    Console(width=160).print(table)
    print(f"seam: all of the cut utterance carried on in {carried_all} of {cuts} cuts (no quiet moment before)")


if __name__ == "__main__":
    main()
