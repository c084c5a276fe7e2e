"""A WebSocket client of the gateway: its bounded outgoing queue, its keepalive, its pacing.

A client that stops reading is closed (code 1008, ``slow_consumer``) once ``CLIENT_QUEUE_MAX`` messages
wait for it, instead of slowing anyone else; one being paced is held, and noticed as soon as it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from gateway import metrics as m
from gateway.auth import Principal
from gateway.link import ClientLink
from gateway.pacing import AudioPacer
from gateway.session import ClientSession
from schemas.errors import BabelstreamError
from schemas.messages import ErrorMsg, ServerMessage

log = logging.getLogger(__name__)


class ClientGone(BabelstreamError):
    """The client closed or dropped its connection while its audio was being paced."""


class WebSocketLink(ClientLink):
    """A WebSocket client: its messages wait in a bounded queue that :meth:`writer` sends from."""

    def __init__(
        self, ws: ServerConnection, session: ClientSession, principal: Principal, queue_max: int, pacer: AudioPacer
    ) -> None:
        super().__init__(session, principal, pacer, tells_pacing=True)
        self.ws = ws
        self.queue: asyncio.Queue[ServerMessage | None] = asyncio.Queue(maxsize=queue_max)
        self.paced_until_s = 0.0  # the loop's time its last pacing delay ends
        self.writer_task: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    async def hold(self, delay_s: float) -> None:
        """Wait ``delay_s`` before reading on (pacing), or raise :class:`ClientGone` as soon as the client
        is gone: what it left in the buffers is not paced into Kafka long after it left."""
        if self._closed is None:
            self._closed = asyncio.ensure_future(self.ws.wait_closed())
        self.paced_until_s = asyncio.get_running_loop().time() + delay_s
        await asyncio.wait({self._closed}, timeout=delay_s)
        if self._closed.done() or self.ws.state is not State.OPEN:
            raise ClientGone

    async def keepalive(self, interval_s: float, timeout_s: float) -> None:
        """:func:`keep_alive`, but never closing a client whose audio is being paced: it is alive by
        definition (what it sent waits unread, and its pong behind it), where websockets' own keepalive
        would close it. The pings still go out meanwhile: writing is how a gone client is noticed while
        its socket is not being read."""
        await keep_alive(self.ws, interval_s, timeout_s, lambda now_s: now_s < self.paced_until_s + timeout_s)

    def close_with(self, error: ErrorMsg, code: int = 1008) -> None:
        """Send a fatal error, then close: the handler's receive loop ends and cleans up."""
        self.enqueue(error)

        async def close() -> None:
            await self.finish()
            if self.writer_task is not None:
                with contextlib.suppress(TimeoutError, ConnectionClosed):
                    await asyncio.wait_for(asyncio.shield(self.writer_task), 2)
            await self.ws.close(code, error.code)

        asyncio.get_running_loop().create_task(close())

    def enqueue(self, msg: ServerMessage) -> None:
        if self.slow:
            return
        m.QUEUE_DEPTH.observe(self.queue.qsize())
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.slow = True
            m.SLOW_CLIENTS.inc()
            m.ERRORS.labels("slow_consumer").inc()
            log.warning("closing slow client %s (%d messages unread)", self.session.session_id, self.queue.qsize())
            asyncio.get_running_loop().create_task(
                self.ws.close(1008, f"slow_consumer: {self.queue.maxsize} messages not read in time")
            )
        else:
            if isinstance(msg, ErrorMsg):
                m.ERRORS.labels(msg.code).inc()

    async def writer(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while (msg := await self.queue.get()) is not None:
                await self.ws.send(msg.to_json())

    async def finish(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


async def keep_alive(
    ws: ServerConnection, interval_s: float, timeout_s: float, excused: Callable[[float], bool] = lambda _: False
) -> None:
    """Ping every ``interval_s``; close with 1011 when a pong is ``timeout_s`` late, unless ``excused(now_s)``
    (the loop's time) says the lateness is expected."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionClosed):
        while True:
            await asyncio.sleep(interval_s)
            pong = await ws.ping()
            try:
                await asyncio.wait_for(asyncio.shield(pong), timeout_s)
            except TimeoutError:
                if excused(loop.time()):
                    continue
                await ws.close(1011, "keepalive ping timeout")
                return
