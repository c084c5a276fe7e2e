"""Broadcast viewers on one gateway, beside a no-viewer baseline in the same run; prints tables.

    .venv/bin/python -m bench.broadcast [--viewers 10,100,1000] [--late 200] [--transcript-min 30]

A real broker, one gateway, one STT worker (Whisper base) and one translation worker. Per row, one speaker
streams the five-clip LibriVox stream (``bench.accuracy``) at real time as a broadcast while N viewers
(in a process of their own, ``python -m bench.broadcast viewers``) watch it, spread over the languages
English speech reaches here (its own, and Portuguese through the one text model). Caption delivery is
timed from the moment the result is readable in the results topic (a group-less consumer in this process,
on the same machine as the gateway, notes when each record arrives: the gateway has it then too) to the
viewer's receipt of the caption made of it (a caption's ``position`` is that record's offset); the
speaker's own finals are timed the same way, so the no-viewer row is the reference. Gateway CPU is read
from ``/proc``; translations per final are counted in the results topic. Then a late join: a 30-minute
transcript (finals and their translations) is written to the results topic of a fresh broadcast, 200
viewers join at once, and each one's time to the whole backlog (``live``) and to the next live caption is
measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import connect

from babelstream.load import percentiles
from bench.accuracy import five_clip_stream
from core.settings import load_settings
from schemas.records import AUDIO_BYTES_PER_S, Result, ResultKind, Translation
from streams.broker import LocalKafka
from streams.topics import Codecs, topic_specs
from tests.stack import Stack, recv_type

console = Console()
LANGS = ["", "pt"]  # what English speech is read in here: its own language, and Portuguese
FRAME_BYTES = 3200  # 100 ms


# -- the viewers' process ------------------------------------------------------------------------------
async def run_viewers(spec: dict[str, Any]) -> None:
    """``spec``: url, broadcast_id, token, n, langs; prints READY once every viewer is live, records what
    each is sent until SIGTERM, then writes ``spec["out"]``."""
    records: list[dict[str, Any]] = []
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    live = asyncio.Semaphore(0)

    async def viewer(i: int) -> None:
        lang = spec["langs"][i % len(spec["langs"])]
        rec: dict[str, Any] = {"lang": lang, "t_connect": time.time(), "t_live": None, "backlog": 0, "captions": []}
        records.append(rec)
        try:
            async with connect(f"{spec['url']}/watch", max_queue=None, open_timeout=60) as ws:
                watch = {"type": "watch", "broadcast_id": spec["broadcast_id"], "viewer_token": spec["token"]}
                await ws.send(json.dumps({**watch, "lang": lang or None}))
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg["type"] == "live":
                        rec["t_live"] = time.time()
                        live.release()
                    elif msg["type"] == "final" and rec["t_live"] is None:
                        rec["backlog"] += 1
                    elif msg["type"] in ("final", "realtime"):
                        rec["captions"].append((msg["type"], msg["position"], time.time()))
                    elif msg["type"] == "error":
                        rec["error"] = msg["code"]
                        live.release()
        except Exception as e:  # a refused or dropped viewer is counted, not fatal
            rec["error"] = type(e).__name__
            live.release()

    tasks = [asyncio.create_task(viewer(i)) for i in range(spec["n"])]
    for _ in range(spec["n"]):
        await live.acquire()
    print("READY", flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(Path(spec["out"]).write_text, json.dumps(records))


class Viewers:
    """The viewers' process, from this one."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.out = workdir / f"viewers-{spec['n']}-{time.monotonic_ns()}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.broadcast", "viewers", json.dumps({**spec, "out": str(self.out)})],
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> None:
        """Wait until every viewer is live (or refused)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until READY (or the process died)
        assert line.strip() == "READY", f"the viewers' process said {line!r}"

    def results(self) -> list[dict[str, Any]]:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        data: list[dict[str, Any]] = json.loads(self.out.read_text())
        return data


# -- this process ---------------------------------------------------------------------------------------
class Arrivals:
    """When each record of the results topic became readable here (by offset, in one session's partition)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.at: dict[tuple[int, int], tuple[float, bytes | None, bytes | None]] = {}
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest")
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe([self.topic])
        while not self.consumer.assignment():
            await self.consumer.getmany(timeout_ms=100)
        await self.consumer.seek_to_end()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=50)
            now = time.time()
            for tp, recs in batch.items():
                for r in recs:
                    self.at[tp.partition, r.offset] = (now, r.key, r.value)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


def gateway_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def speak(url: str, pcm: bytes, on_ready: Any) -> tuple[str, list[tuple[int, float]]]:
    """The speaker: a broadcast streaming ``pcm`` at real time; its finals' (utterance, receipt time)."""
    finals: list[tuple[int, float]] = []
    async with connect(url, max_queue=None) as ws:
        await ws.send(json.dumps({"type": "start", "broadcast": True, "public": True, "source_lang": "en"}))
        ready = await recv_type(ws, "ready")
        await on_ready(ready["broadcast"]["broadcast_id"])

        async def read() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "final":
                    finals.append((msg["utterance_index"], time.time()))
                elif msg["type"] == "stopped" and not msg["pending"]:
                    return

        reader = asyncio.create_task(read())
        t0 = time.monotonic()
        for i in range(0, len(pcm), FRAME_BYTES):
            await ws.send(pcm[i : i + FRAME_BYTES])
            await asyncio.sleep(max(0.0, t0 + (i + FRAME_BYTES) / AUDIO_BYTES_PER_S - time.monotonic()))
        await ws.send(json.dumps({"type": "stop"}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 120)
        await asyncio.sleep(3)  # the last translations
        return ready["session_id"], finals


async def one_row(st: Stack, gw_pid: int, n: int, workdir: Path, pcm: bytes) -> dict[str, Any]:
    s = load_settings(kafka_bootstrap_servers=st.bootstrap, topic_prefix=st.prefix)
    topics = topic_specs(s)
    arrivals = Arrivals(st.bootstrap, topics.results.name)
    await arrivals.start()
    viewers: Viewers | None = None

    async def on_ready(broadcast_id: str) -> None:
        nonlocal viewers
        if n:
            viewers = Viewers(
                {"url": st.ws_url, "broadcast_id": broadcast_id, "token": None, "n": n, "langs": LANGS}, workdir
            )
            await asyncio.to_thread(viewers.ready)
            await asyncio.sleep(2)  # the audience record reaches the speaker's gateway

    cpu0 = gateway_cpu_s(gw_pid)
    t0 = time.monotonic()
    sid, finals = await speak(st.ws_url, pcm, on_ready)
    minutes = (time.monotonic() - t0) / 60
    cpu = gateway_cpu_s(gw_pid) - cpu0
    watched = viewers.results() if viewers else []
    await arrivals.stop()
    codec = Codecs.create(s, topics).result
    mine = {off: (t, codec.decode(v)) for (p, off), (t, k, v) in arrivals.at.items() if k == sid.encode() and v}
    final_at = {r.utterance_index: t for t, r in mine.values() if r.kind is ResultKind.FINAL}
    speaker = [t - final_at[i] for i, t in finals if i in final_at]
    delivery = [t - mine[pos][0] for v in watched for kind, pos, t in v["captions"] if pos in mine and kind == "final"]
    per = Counter(
        (r.utterance_index, r.translation.target_lang)
        for _, r in mine.values()
        if r.translation and r.kind is ResultKind.TRANSLATION
    )
    return {
        "n": n,
        "finals": len(final_at),
        "delivered": len(delivery),
        "refused": sum(1 for v in watched if v.get("error")),
        "delivery": percentiles(delivery),
        "speaker": percentiles(speaker),
        "cpu_s": cpu,
        "viewer_minutes": n * minutes,
        "translations_per_final": (sum(per.values()) / len(final_at)) if final_at else 0.0,
        "max_per_language": max(per.values(), default=0),
    }


async def late_join(st: Stack, joiners: int, transcript_min: int, workdir: Path) -> dict[str, Any]:
    """A ``transcript_min``-minute transcript in the log, then ``joiners`` viewers at once."""
    s = load_settings(kafka_bootstrap_servers=st.bootstrap, topic_prefix=st.prefix)
    topics = topic_specs(s)
    codec = Codecs.create(s, topics).result
    async with connect(st.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "broadcast": True, "public": True, "source_lang": "en"}))
        ready = await recv_type(ws, "ready")
    sid, bid = ready["session_id"], ready["broadcast"]["broadcast_id"]
    producer = AIOKafkaProducer(bootstrap_servers=st.bootstrap, linger_ms=20)
    await producer.start()
    utterances = transcript_min * 12  # one every 5 s

    async def put(i: int) -> None:
        text = f"this is sentence number {i} of a long talk about streaming speech"
        f = Result(
            sid,
            i,
            ResultKind.FINAL,
            text,
            language="en",
            audio_start_ms=i * 5000,
            audio_end_ms=i * 5000 + 4000,
            translate=True,
            target_langs=["pt"],
        )
        t = Result(
            sid,
            i,
            ResultKind.TRANSLATION,
            text,
            language="en",
            audio_start_ms=f.audio_start_ms,
            audio_end_ms=f.audio_end_ms,
            translate=True,
            target_langs=["pt"],
            translation=Translation("en", "pt", f"esta é a frase número {i} de uma longa palestra", "bench"),
        )
        for r in (f, t):
            await producer.send(topics.results.name, codec.encode(r), key=sid.encode())

    for i in range(utterances):
        await put(i)
    await producer.flush()
    t0 = time.time()
    viewers = Viewers({"url": st.ws_url, "broadcast_id": bid, "token": None, "n": joiners, "langs": LANGS}, workdir)
    await asyncio.to_thread(viewers.ready)
    t_next = time.time()
    await put(utterances)
    await producer.flush()
    await asyncio.sleep(3)
    await producer.stop()
    watched = viewers.results()
    to_live = [v["t_live"] - t0 for v in watched if v["t_live"]]
    to_next = [v["captions"][0][2] - t_next for v in watched if v["captions"]]
    return {
        "joiners": joiners,
        "utterances": utterances,
        "complete": sum(1 for v in watched if v["backlog"] == utterances),
        "to_live": percentiles(to_live),
        "to_next": percentiles(to_next),
        "refused": sum(1 for v in watched if v.get("error")),
    }


def ms(p: dict[str, float], key: str) -> str:
    return f"{p[key] * 1000:.0f}" if key in p else "-"


async def bench(args: argparse.Namespace, bootstrap: str, workdir: Path) -> list[Table]:
    st = Stack(
        bootstrap,
        workdir,
        {
            "AUDIO_PARTITIONS": "4",
            "RESULTS_PARTITIONS": "4",
            "MODEL_SIZE": "base",
            "MAX_VIEWERS": "20000",
            "MAX_VIEWERS_PER_BROADCAST": "20000",
        },
    )
    gw, stt, tr = st.start_gateway(), st.start_worker("stt"), st.start_worker("translate")
    rows, late = [], None
    try:
        st.wait_healthy([gw, stt, tr], timeout_s=180)
        st.wait_assigned([stt], partitions=4)
        pcm, _ = five_clip_stream()
        for n in [0, *args.viewers]:
            rows.append(await one_row(st, gw.proc.pid, n, workdir, pcm))
            console.print(rows[-1])
        late = await late_join(st, args.late, args.transcript_min, workdir)
        console.print(late)
    finally:
        st.stop()
    table = Table(
        title=f"Broadcast viewers on one gateway (five-clip LibriVox stream at real time; viewers over {LANGS})"
    )
    for col in (
        "viewers",
        "finals",
        "captions delivered",
        "refused",
        "delivery p50 (ms)",
        "delivery p99 (ms)",
        "speaker's final p50 / p99 (ms)",
        "gateway CPU s",
        "CPU s per 1,000 viewer-min",
        "translations per final",
    ):
        table.add_column(col, justify="right")
    base_cpu = rows[0]["cpu_s"]
    for r in rows:
        per_kvm = f"{(r['cpu_s'] - base_cpu) / r['viewer_minutes'] * 1000:.1f}" if r["n"] else "-"
        table.add_row(
            str(r["n"]) if r["n"] else "0 (baseline)",
            str(r["finals"]),
            str(r["delivered"]),
            str(r["refused"]),
            ms(r["delivery"], "p50"),
            ms(r["delivery"], "p99"),
            f"{ms(r['speaker'], 'p50')} / {ms(r['speaker'], 'p99')}",
            f"{r['cpu_s']:.1f}",
            per_kvm,
            f"{r['translations_per_final']:.2f} (max {r['max_per_language']} per language)",
        )
    tables = [table]
    if late:
        lt = Table(title=f"Late join: {late['joiners']} viewers at once to a {args.transcript_min}-minute transcript")
        for col in (
            "finals in the log",
            "viewers with all of it",
            "refused",
            "to the whole backlog p50 / p99 (ms)",
            "then the next live caption p50 / p99 (ms)",
        ):
            lt.add_column(col, justify="right")
        lt.add_row(
            str(late["utterances"]),
            f"{late['complete']} / {late['joiners']}",
            str(late["refused"]),
            f"{ms(late['to_live'], 'p50')} / {ms(late['to_live'], 'p99')}",
            f"{ms(late['to_next'], 'p50')} / {ms(late['to_next'], 'p99')}",
        )
        tables.append(lt)
    return tables


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "viewers":
        asyncio.run(run_viewers(json.loads(sys.argv[2])))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--viewers", default="10,100,1000")
    ap.add_argument("--late", type=int, default=200)
    ap.add_argument("--transcript-min", type=int, default=30)
    args = ap.parse_args()
    args.viewers = [int(x) for x in args.viewers.split(",") if x]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="babelstream-bench-") as tmp, LocalKafka(Path(tmp) / "kafka") as k:
        tables = asyncio.run(bench(args, k.bootstrap, Path(tmp)))
    for t in tables:
        console.print(t)
    console.print(f"machine: {os.cpu_count()} CPUs; took {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
