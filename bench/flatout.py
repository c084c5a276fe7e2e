"""What a client sending audio flat out costs the gateway, beside a real-time one; prints a table.

    .venv/bin/python -m bench.flatout [--clients 10,30] [--seconds 10]   # from the repository root

A fresh gateway per row (default settings, null STT engine, one real broker): N clients each either
stream LibriVox speech at real time in 100 ms frames (the baseline: what a session costs anyway) or send
256 KiB frames of it as fast as TCP lets them (paced by the gateway at MAX_REALTIME_FACTOR after the
AUDIO_BURST_S burst). Measured: the gateway's peak RSS over an idle, warmed-up gateway, per client; the
flat-out clients' close codes (none expected while they send: they are paced, not dropped); and, once
they all hang up without a goodbye, the seconds until the gateway counts no session (no ghosts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.run import start_stack
from streams.broker import LocalKafka
from tests.audio import librivox
from tests.stack import Service, Stack, http_json

FLAT_FRAME_BYTES = 256 * 1024
REALTIME_FRAME_BYTES = 3200  # 100 ms of 16 kHz PCM16
MIB = 2**20


def speech(nbytes: int) -> bytes:
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    return (pcm * (nbytes // len(pcm) + 1))[:nbytes]


async def drain(ws: ClientConnection, errors: list[str]) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            msg = json.loads(message)
            if msg["type"] == "error" and msg["code"] != "rate_limited":
                errors.append(f"{msg['code']}: {msg['message']}")


async def started(url: str) -> ClientConnection:
    """A connection whose session has started (its ``ready`` came)."""
    ws = await connect(url, max_size=None, open_timeout=60)
    await ws.send(json.dumps({"type": "start", "source_lang": "en"}))
    async with asyncio.timeout(60):
        while json.loads(await ws.recv())["type"] != "ready":
            pass
    return ws


async def send_for(ws: ClientConnection, flat_out: bool, seconds: float) -> str | None:
    """Send audio for ``seconds``; returns the close code, reason and errors if the gateway closed it."""
    frame_bytes = FLAT_FRAME_BYTES if flat_out else REALTIME_FRAME_BYTES
    audio = speech(FLAT_FRAME_BYTES * 4)
    errors: list[str] = []
    reader = asyncio.create_task(drain(ws, errors))
    loop = asyncio.get_running_loop()
    t0, i = loop.time(), 0
    try:
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            async with asyncio.timeout(seconds):
                while True:
                    at = (i * frame_bytes) % (len(audio) - frame_bytes)
                    await ws.send(audio[at : at + frame_bytes])
                    i += 1
                    if not flat_out:
                        await asyncio.sleep(max(0.0, t0 + i * 0.1 - loop.time()))
        return None if ws.close_code is None else f"{ws.close_code} {ws.close_reason} {errors}"
    finally:
        reader.cancel()
        ws.transport.abort()  # gone without a goodbye, whatever it sent still unread on the gateway's side


async def one_row(gw: Service, n: int, flat_out: bool, seconds: float) -> tuple[float, int, float]:
    """(peak RSS growth per client in MiB over the started sessions, clients closed while sending, s until
    no session is counted once they are gone)."""
    async with connect(gw.ws_url, max_size=None) as warm:  # the VAD and the resampler warmed up first
        await warm.send(json.dumps({"type": "start", "source_lang": "en"}))
        await warm.send(speech(FLAT_FRAME_BYTES))
        await warm.send(json.dumps({"type": "ping"}))
        async with asyncio.timeout(60):
            while json.loads(await warm.recv())["type"] != "pong":
                pass
    await asyncio.sleep(1)
    conns = [await started(gw.ws_url) for _ in range(n)]  # all started, then all send at once
    before = peak = gw.rss_bytes()
    clients = asyncio.gather(*(send_for(ws, flat_out, seconds) for ws in conns))
    while not clients.done():
        peak = max(peak, gw.rss_bytes())
        await asyncio.sleep(0.2)
    codes = [code for code in await clients if code is not None]
    if codes:
        print(f"{n} clients, flat out={flat_out}: closed while sending: {sorted(set(codes))}")
    closed = len(codes)
    gone_t0 = time.monotonic()
    async with asyncio.timeout(120):
        while (await asyncio.to_thread(http_json, gw.health_url))[1]["clients"]:
            await asyncio.sleep(0.1)
    return (peak - before) / n / MIB, closed, time.monotonic() - gone_t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="10,30")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    table = Table(title=f"Gateway memory per client, {args.seconds:g} s of sending (null STT engine)")
    for col in (
        "clients",
        "real time: MiB each",
        "flat out: MiB each",
        "flat ÷ real time",
        "closed",
        "ghosts gone (s)",
    ):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="babelstream-bench-") as tmp, LocalKafka(Path(tmp) / "kafka") as k:
        st: Stack = start_stack(k.bootstrap, Path(tmp) / "stack", {"STT_ENGINE": "null", "MAX_SESSIONS": "2000"})
        try:
            for n in (int(x) for x in args.clients.split(",")):
                row: dict[bool, tuple[float, int, float]] = {}
                for flat_out in (False, True):
                    gw = st.start_gateway()
                    st.wait_healthy([gw], timeout_s=120)
                    try:
                        row[flat_out] = asyncio.run(one_row(gw, n, flat_out, args.seconds))
                    finally:
                        st.retire(gw)
                (rt, _, _), (flat, closed, gone_s) = row[False], row[True]
                table.add_row(
                    str(n), f"{rt:.2f}", f"{flat:.2f}", f"{flat / max(rt, 0.01):.1f}", str(closed), f"{gone_s:.1f}"
                )
        finally:
            st.stop()
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
