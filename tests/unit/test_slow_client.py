"""A client that stops reading is closed once its bounded queue is full; nobody else waits on it."""

from __future__ import annotations

import asyncio

from core.settings import load_settings
from gateway.auth import ANONYMOUS
from gateway.connection import WebSocketLink
from gateway.pacing import AudioPacer
from gateway.session import ClientSession
from schemas.messages import Pong


class StuckSocket:
    """A WebSocket whose peer never reads: send() never completes."""

    def __init__(self) -> None:
        self.closed_with: tuple[int, str] | None = None

    async def send(self, _: str) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


async def test_slow_client_is_closed_when_its_queue_is_full() -> None:
    s = load_settings(client_queue_max=4)
    ws = StuckSocket()
    pacer = AudioPacer(s.max_realtime_factor, s.audio_burst_s)
    conn = WebSocketLink(ws, ClientSession(s, "gw", lambda: None), ANONYMOUS, s.client_queue_max, pacer)  # type: ignore[arg-type]
    writer = asyncio.create_task(conn.writer())
    for i in range(10):  # never blocks the caller, whatever the client does
        conn.enqueue(Pong(time_ms=i))
    assert conn.slow and conn.queue.qsize() <= 4
    async with asyncio.timeout(2):  # the close is a task of its own: poll for it
        while ws.closed_with is None:
            await asyncio.sleep(0.01)
    assert ws.closed_with[0] == 1008 and "slow_consumer" in ws.closed_with[1]
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
