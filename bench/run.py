"""Benchmarks of the whole pipeline on this machine; prints tables (no assertions).

    .venv/bin/python -m bench.run            # from the repository root, after bin/test (test data)

1. pipeline overhead with the null STT engine (speech end -> final) at 1, 10 and 100 sessions;
2. time to first interim and to final after end of speech on real clips (Whisper base), and the
   streaming WER against offline faster-whisper on the same clips;
3. the most concurrent real-time sessions this machine sustains (speech end -> final p90 under
   ``--max-final-s``, no overload errors).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from babelstream.client import stream_audio
from babelstream.load import end_to_final_s, percentiles, run_load, start_to_interim_s, summarize
from core.audio.resample import StreamResampler, pcm16_to_float
from core.engines.whisper import WhisperEngine
from core.settings import load_settings
from streams.broker import LocalKafka
from tests.audio import asterisk_es, librivox, wer
from tests.stack import Stack

console = Console()


def to16k(pcm: bytes, rate: int) -> bytes:
    r = StreamResampler(rate)
    return r.process(pcm) + r.flush()


def fmt(pct: dict[str, float], key: str) -> str:
    return f"{pct[key] * 1000:.0f}" if key in pct else "-"


def start_stack(bootstrap: str, workdir: Path, env: dict[str, str]) -> Stack:
    st = Stack(bootstrap, workdir, {"AUDIO_PARTITIONS": "8", "RESULTS_PARTITIONS": "4", **env})
    gw, stt = st.start_gateway(), st.start_worker("stt")
    st.wait_healthy([gw, stt], timeout_s=180)
    st.wait_assigned([stt], partitions=8)
    return st


def overhead(bootstrap: str, workdir: Path, sessions: list[int]) -> Table:
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    st = start_stack(bootstrap, workdir / "null", {"STT_ENGINE": "null", "MAX_SESSIONS": "2000"})
    table = Table(title="Pipeline overhead, null STT engine (speech end -> final, ms)")
    for col in ("sessions", "finals", "p50", "p90", "p99", "failed"):
        table.add_column(col, justify="right")
    try:
        for n in sessions:
            reports, failed = asyncio.run(run_load(st.ws_url, pcm, n, pace=1.0, stagger_s=2.0 / n))
            s = summarize(reports, failed)
            table.add_row(
                str(n),
                str(s.utterances),
                fmt(s.final_after_end_s, "p50"),
                fmt(s.final_after_end_s, "p90"),
                fmt(s.final_after_end_s, "p99"),
                str(failed),
            )
    finally:
        st.stop()
    return table


def real_clips(bootstrap: str, workdir: Path, max_sessions: list[int], max_final_s: float) -> list[Table]:
    clips = {
        "LibriVox 0870 (en, 7.1 s)": librivox("sense_and_sensibility_01_austen_64kb-0870"),
        "LibriVox 0920 (en, 6.1 s)": librivox("sense_and_sensibility_01_austen_64kb-0920"),
        "Asterisk vm-intro (es, 8 kHz, 7.3 s)": asterisk_es("vm-intro"),
    }
    engine = WhisperEngine.from_settings(load_settings(model_size="base"))
    st = start_stack(bootstrap, workdir / "base", {"MODEL_SIZE": "base"})
    quality = Table(title="Real clips, Whisper base on CPU (one session at a time)")
    for col in ("clip", "first interim (ms)", "final after speech end (ms)", "streaming WER", "offline WER"):
        quality.add_column(col, justify="right")
    capacity = Table(title=f"Concurrent real-time sessions (LibriVox 0870 loop; ok = p90 final < {max_final_s}s)")
    for col in ("sessions", "final p50 (ms)", "final p90 (ms)", "overloaded", "ok"):
        capacity.add_column(col, justify="right")
    try:
        for name, (pcm, rate, ref) in clips.items():
            report = asyncio.run(stream_audio(st.ws_url, pcm, sample_rate=rate, pace=1.0, timeout_s=120))
            offline = engine.transcribe(pcm16_to_float(to16k(pcm, rate)), language=None, final=True).text
            quality.add_row(
                name,
                fmt(percentiles(start_to_interim_s(report)), "p50"),
                fmt(percentiles(end_to_final_s(report)), "p50"),
                f"{wer(ref, report.text):.3f}",
                f"{wer(ref, offline):.3f}",
            )
        pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0870")
        for n in max_sessions:
            reports, failed = asyncio.run(run_load(st.ws_url, pcm, n, pace=1.0, stagger_s=0.5))
            s = summarize(reports, failed)
            ok = failed == 0 and s.overloaded == 0 and s.final_after_end_s.get("p90", 1e9) < max_final_s
            capacity.add_row(
                str(n),
                fmt(s.final_after_end_s, "p50"),
                fmt(s.final_after_end_s, "p90"),
                str(s.overloaded),
                "yes" if ok else "no",
            )
            if not ok:
                break
    finally:
        st.stop()
    return [quality, capacity]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", default="1,10,100", help="null-engine session counts")
    ap.add_argument("--max-sessions", default="1,2,3,4,6,8", help="real-time capacity steps")
    ap.add_argument("--max-final-s", type=float, default=4.0)
    args = ap.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="babelstream-bench-") as tmp, LocalKafka(Path(tmp) / "kafka") as k:
        tables = [overhead(k.bootstrap, Path(tmp), [int(x) for x in args.sessions.split(",")])]
        tables += real_clips(k.bootstrap, Path(tmp), [int(x) for x in args.max_sessions.split(",")], args.max_final_s)
    for t in tables:
        console.print(t)
    console.print(f"machine: {__import__('os').cpu_count()} CPUs; took {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
