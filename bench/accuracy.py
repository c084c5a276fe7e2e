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

import numpy as np
import soxr
from rich.console import Console
from rich.table import Table

from bench.reference import faster_whisper
from core.audio.resample import pcm16_to_float
from core.audio.vad import DualVad, SileroVad, find_silero_model
from core.engines.models import resolve_whisper_model
from core.engines.stt import DecodeRequest
from core.engines.whisper import WhisperEngine
from core.settings import load_settings
from core.utterances import DecodeFinal, Utterance, UtteranceAssembler
from gateway.session import ClientSession, Produce
from schemas.messages import parse_client_message
from schemas.records import AUDIO_SAMPLE_RATE_HZ
from tests.audio import (
    asterisk_es,
    asterisk_es_transcripts,
    english_prompts,
    librivox,
    librivox_transcripts,
    silence,
    wer,
)

CONTEXT_FINALS = 2  # previous finals given as context
CLIPS = ["0870", "0880", "0890", "0920", "0930"]


def five_clip_stream(gap_ms: int = 1000) -> tuple[bytes, str]:
    pcm, refs = b"", []
    for clip in CLIPS:
        audio, rate, ref = librivox(f"sense_and_sensibility_01_austen_64kb-{clip}")
        assert rate == AUDIO_SAMPLE_RATE_HZ
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
    return [a.utterance for ev in events if isinstance(a := assembler.add(ev, now_ms=0), DecodeFinal)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="base")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pads", default="-1,2000,1000", help="ENCODER_PAD_MS values; -1: the full 30 s window")
    ap.add_argument("--margins", default="-1", help="TRIM_MARGIN_MS values; -1: no trimming")
    ap.add_argument("--language", default=None, help="None: detect, as a client that names none")
    ap.add_argument("--prompts", type=int, default=12, help="how many Asterisk prompts in the short-clip table")
    ap.add_argument("--english", type=int, default=0, help="how many English Asterisk prompts (GSM) to add")
    ap.add_argument("--gaps-ms", default="1000", help="silence between the clips (a longer one: full pre-roll)")
    args = ap.parse_args()

    engine = WhisperEngine(resolve_whisper_model(args.model, None), cpu_threads=args.threads, beam_size=5)
    pads = [int(x) for x in args.pads.split(",")]
    table = Table(title=f"Five LibriVox clips, Whisper {args.model} int8, {args.threads} threads, beam 5")
    for col in ("gaps", "decode", "utterances", "WER", "vs offline", "decode time", "time vs faster-whisper"):
        table.add_column(col, justify="right")
    for gap_ms in [int(x) for x in args.gaps_ms.split(",")]:
        stream(engine, table, gap_ms, pads, [int(x) for x in args.margins.split(",")], args.language)
    Console(width=160).print(table)
    table = Table(title=f"Short clips one by one, Whisper {args.model}, language detected")
    for col in ("clips", "decode", "count", "WER", "decode time", "time vs faster-whisper"):
        table.add_column(col, justify="right")
    mixed = [librivox(name) for name in sorted(librivox_transcripts())]
    mixed += [asterisk_es(name) for name in sorted(asterisk_es_transcripts())[: args.prompts]]
    clips(engine, table, pads, mixed, "LibriVox + Asterisk es")
    if args.english:
        clips(engine, table, pads, english_prompts(args.english), "Asterisk en (GSM)")
    Console(width=160).print(table)


def decode_all(engine: WhisperEngine, audios: list[np.ndarray], language: str | None, how: str) -> tuple[str, float]:
    """Decode one after another as ``how`` says: ``faster-whisper``, ``pad N`` or ``pad N + context``."""
    texts: list[str] = []
    t0 = time.perf_counter()
    for audio in audios:
        context = " ".join(texts[-CONTEXT_FINALS:]) if "context" in how else None
        if how == "faster-whisper":
            texts.append(faster_whisper(engine, audio, language))
        else:
            engine.encoder_pad_ms = int(how.split()[1])
            texts.append(engine.transcribe_batch([DecodeRequest(audio, language, True, context=context)])[0].text)
    return " ".join(texts), time.perf_counter() - t0


def stream(
    engine: WhisperEngine, table: Table, gap_ms: int, pads: list[int], margins: list[int], language: str | None
) -> None:
    pcm, ref = five_clip_stream(gap_ms)
    gap = f"{gap_ms} ms"
    t0 = time.perf_counter()
    offline_wer = wer(ref, faster_whisper(engine, pcm16_to_float(pcm), language))
    table.add_row(
        gap,
        "offline faster-whisper, whole stream",
        "1",
        f"{offline_wer:.3f}",
        "1.00",
        f"{time.perf_counter() - t0:.1f} s",
        "-",
    )
    utts = utterances(pcm)
    default_pad = load_settings().encoder_pad_ms
    for margin in margins:
        audios = [u.speech(margin)[0] for u in utts]
        trim = "" if margin < 0 else f", speech ± {margin} ms"
        base_s = 0.0
        for how in ["faster-whisper"] + [f"pad {p}" for p in pads] + [f"pad {default_pad} + context"]:
            text, took_s = decode_all(engine, audios, language, how)
            base_s = base_s or took_s
            w = wer(ref, text)
            ratio = f"{w / offline_wer:.2f}" if offline_wer else "-"
            table.add_row(
                gap,
                f"utterances, {label(how)}{trim}",
                str(len(utts)),
                f"{w:.3f}",
                ratio,
                f"{took_s:.1f} s",
                f"{took_s / base_s:.2f}",
            )


def clips(engine: WhisperEngine, table: Table, pads: list[int], items: list[tuple[bytes, int, str]], name: str) -> None:
    audios = [
        soxr.resample(pcm16_to_float(pcm), rate, AUDIO_SAMPLE_RATE_HZ).astype(np.float32) for pcm, rate, _ in items
    ]
    refs = [ref for _, _, ref in items]
    base_s = 0.0
    for how in ["faster-whisper"] + [f"pad {p}" for p in pads]:
        errors = words = 0.0
        took_s = 0.0
        for audio, ref in zip(audios, refs, strict=True):
            text, s = decode_all(engine, [audio], None, how)
            n = len(ref.split())
            errors, words, took_s = errors + wer(ref, text) * n, words + n, took_s + s
        base_s = base_s or took_s
        table.add_row(
            name, label(how), str(len(audios)), f"{errors / words:.3f}", f"{took_s:.1f} s", f"{took_s / base_s:.2f}"
        )


def label(how: str) -> str:
    if how == "faster-whisper":
        return "faster-whisper per utterance (full window)"
    pad = int(how.split()[1])
    window = "full 30 s window" if pad < 0 else f"utterance + {pad} ms"
    return f"batched engine, {window}" + (", previous finals as context" if "context" in how else "")


if __name__ == "__main__":
    main()
