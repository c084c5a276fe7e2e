"""Accuracy of the streaming path against offline faster-whisper on the same audio; prints a table.

    .venv/bin/python -m bench.accuracy        # from the repository root, after bin/test (test data)

Five LibriVox clips joined with 1 s gaps go through the gateway's own sans-I/O session (resampler, dual
VAD, segmenter: the audio events it would write to Kafka) and the STT worker's utterance assembly, and
each final is decoded as the worker decodes it, with the edge trimming under test. The reference row is
offline faster-whisper on the whole stream, same model, same settings, in the same run.
"""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.table import Table

from babelstream.audio.resample import pcm16_to_float
from babelstream.audio.vad import DualVad, SileroVad, find_silero_model
from babelstream.engines.models import resolve_whisper_model
from babelstream.engines.stt import WhisperEngine
from babelstream.settings import load_settings
from babelstream.utterances import Final, Utterance, UtteranceAssembler
from gateway.session import ClientSession, Produce
from schemas.messages import parse_client_message
from tests.audio import librivox, silence, wer

CLIPS = ["0870", "0880", "0890", "0920", "0930"]


def five_clip_stream(gap_ms: int = 1000) -> tuple[bytes, str]:
    pcm, refs = b"", []
    for clip in CLIPS:
        audio, rate, ref = librivox(f"sense_and_sensibility_01_austen_64kb-{clip}")
        assert rate == 16000
        pcm += audio + silence(gap_ms)
        refs.append(ref)
    return silence(500) + pcm + silence(1000), " ".join(refs)


def utterances(pcm: bytes) -> list[Utterance]:
    """What the STT worker assembles from the audio events the gateway writes for this stream."""
    s = load_settings()
    silero = find_silero_model(s.silero_model_path)
    session = ClientSession(s, "bench", lambda: DualVad.from_settings(s, SileroVad(silero)))
    session.start(parse_client_message(json.dumps({"type": "start"})), None)  # type: ignore[arg-type]
    events = []
    for off in range(0, len(pcm), 3200):
        events += [o.event for o in session.audio(pcm[off : off + 3200]) if isinstance(o, Produce)]
    events += [o.event for o in session.disconnect() if isinstance(o, Produce)]
    assembler = UtteranceAssembler(interim_interval_ms=0)
    return [a.utterance for ev in events if isinstance(a := assembler.add(ev, now_ms=0), Final)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="base")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--margins", default="-1,0,100,200,400", help="trim margins in ms; -1: no trimming")
    ap.add_argument("--language", default=None, help="None: detect, as a client that names none")
    ap.add_argument("--gaps-ms", default="1000,3000", help="silence between the clips (a longer one: full pre-roll)")
    args = ap.parse_args()

    engine = WhisperEngine(resolve_whisper_model(args.model, None), cpu_threads=args.threads, beam_size=5)
    table = Table(title=f"Five LibriVox clips, Whisper {args.model} int8, {args.threads} threads, beam 5")
    for col in ("gaps", "decode", "utterances", "WER", "vs offline", "decode time"):
        table.add_column(col, justify="right")
    for gap_ms in [int(x) for x in args.gaps_ms.split(",")]:
        compare(engine, table, gap_ms, [int(x) for x in args.margins.split(",")], args.language)
    Console().print(table)


def compare(engine: WhisperEngine, table: Table, gap_ms: int, margins: list[int], language: str | None) -> None:
    pcm, ref = five_clip_stream(gap_ms)
    gap = f"{gap_ms} ms"

    t0 = time.perf_counter()
    offline = engine.transcribe(pcm16_to_float(pcm), language=language, final=True)
    offline_wer = wer(ref, offline.text)
    table.add_row(gap, "offline, whole stream", "1", f"{offline_wer:.3f}", "1.00", f"{time.perf_counter() - t0:.1f} s")

    utts = utterances(pcm)
    for margin in margins:
        t0 = time.perf_counter()
        texts = []
        for u in utts:
            audio, _ = u.speech(margin)
            texts.append(engine.transcribe(audio, language=language, final=True).text)
        w = wer(ref, " ".join(texts))
        label = "streaming, whole utterances" if margin < 0 else f"streaming, speech ± {margin} ms"
        ratio = f"{w / offline_wer:.2f}" if offline_wer else "-"
        table.add_row(gap, label, str(len(utts)), f"{w:.3f}", ratio, f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
