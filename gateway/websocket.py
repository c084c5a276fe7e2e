"""The WebSocket carrier: listens, and runs each connection's session through the gateway core.

A connection is a :class:`gateway.connection.WebSocketLink` from the handshake
(:mod:`gateway.handshake`) on: its frames are read one at a time (websockets reads at most
``FRAMES_READ_AHEAD`` ahead, so what one connection may buffer is bounded and TCP pushes back), checked
against ``MAX_FRAME_BYTES`` (frames over ``OVERSIZE_FACTOR`` times it are refused from their header,
1009), and handed to the core (:class:`gateway.link.SessionHost`): audio paced and analysed off the event
loop, messages parsed, ``start`` begun there. It ends on a fatal error, ``START_TIMEOUT_S`` without a
``start``, ``SESSION_IDLE_TIMEOUT_S`` without a frame, a client that does not read, or a takeover. A
connection to the ``/watch`` path is a broadcast's viewer instead (:mod:`gateway.watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from gateway import metrics as m
from gateway.connection import ClientGone, WebSocketLink
from gateway.handshake import WATCH_PATH, Handshake
from gateway.link import SessionHost
from gateway.pacing import AudioPacer
from gateway.session import ClientSession, Output
from gateway.viewers import Viewers
from gateway.watch import serve_websocket_viewer
from schemas.messages import ErrorMsg, ProtocolError, Start, parse_client_message
from streams.errors import KafkaRejected, KafkaUnavailable

log = logging.getLogger(__name__)

FRAMES_READ_AHEAD = 4  # frames websockets reads ahead of the handler per connection (then TCP pushes back)
OVERSIZE_FACTOR = 2  # frames up to this many times MAX_FRAME_BYTES get frame_too_large, larger ones 1009


class WebSocketClients:
    def __init__(self, host: SessionHost, handshake: Handshake, viewers: Viewers) -> None:
        self.host = host
        self.handshake = handshake
        self.viewers = viewers

    async def serve(self, address: str, port: int, tls: ssl.SSLContext | None) -> Server:
        return await serve(
            self.handler,
            address,
            port,
            max_size=self.host.s.max_frame_bytes * OVERSIZE_FACTOR,  # what one connection may buffer is bounded:
            max_queue=FRAMES_READ_AHEAD,  # a few frames (then TCP back-pressure), each at most this large
            ping_interval=None,  # WebSocketLink.keepalive instead: it does not close a client being paced
            process_request=self.handshake.check,
            ssl=tls,
        )

    async def handler(self, ws: ServerConnection) -> None:
        if ws.request is not None and urlsplit(ws.request.path).path == WATCH_PATH:
            await serve_websocket_viewer(self.viewers, ws)
            return
        host = self.host
        m.CLIENTS.inc()
        session = ClientSession(host.s, host.gateway_id, host.vad)
        conn = WebSocketLink(
            ws,
            session,
            self.handshake.principal_of(ws),
            host.s.client_queue_max,
            AudioPacer(host.s.max_realtime_factor, host.s.audio_burst_s),
        )
        host.connected(conn)
        conn.writer_task = asyncio.create_task(conn.writer())
        keepalive = asyncio.create_task(conn.keepalive(host.s.keepalive_interval_s, host.s.keepalive_timeout_s))
        start_deadline = asyncio.get_running_loop().time() + host.s.start_timeout_s
        try:
            while True:
                if session.started:
                    wait_s, timeout_error = host.s.session_idle_timeout_s, "idle_timeout"
                else:
                    wait_s, timeout_error = start_deadline - asyncio.get_running_loop().time(), "start_timeout"
                try:
                    async with asyncio.timeout(max(0.0, wait_s)):
                        message = await ws.recv()
                except TimeoutError:
                    what = "nothing received" if session.started else "no start message"
                    conn.enqueue(ErrorMsg(code=timeout_error, message=f"{what} for {wait_s:g} s", fatal=True))
                    break
                try:
                    await host.apply(conn, await self._on_message(conn, message))
                    host.backfill(conn)  # after its ready: what came while a resumed session was away
                except ProtocolError as e:
                    conn.enqueue(e.to_message())
                    if e.fatal:
                        break
                if conn.slow or session.superseded:
                    break
        except (ConnectionClosed, ClientGone):
            pass
        except KafkaUnavailable as e:
            log.warning("session %s: Kafka unavailable: %s", session.session_id, e)
            conn.enqueue(
                ErrorMsg(
                    code="unavailable",
                    message="the message broker cannot be reached; reconnect and resume the session shortly",
                    fatal=True,
                )
            )
        except KafkaRejected as e:
            log.error("session %s: Kafka refused its data: %s", session.session_id, e)
            conn.enqueue(
                ErrorMsg(code="rejected", message=f"the message broker refused this session's data: {e}", fatal=True)
            )
        except Exception:
            log.exception("session %s failed", session.session_id)
            conn.enqueue(ErrorMsg(code="internal", message="internal error; the session was closed", fatal=True))
        finally:
            keepalive.cancel()
            await host.release(conn)
            await conn.finish()
            with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                await asyncio.wait_for(conn.writer_task, 5)
            conn.writer_task.cancel()
            m.CLIENTS.dec()

    async def _on_message(self, conn: WebSocketLink, message: str | bytes) -> list[Output]:
        session = conn.session
        size_bytes = len(message) if isinstance(message, bytes) else utf8_size(message)
        if size_bytes > self.host.s.max_frame_bytes:
            raise ProtocolError(
                "frame_too_large", f"frame of {size_bytes} bytes exceeds MAX_FRAME_BYTES={self.host.s.max_frame_bytes}"
            )
        if isinstance(message, bytes):
            m.AUDIO_BYTES.inc(len(message))
            await self.host.pace(conn, session.frame_seconds(len(message)))
            # resampling and both VADs run off the event loop, one frame at a time per session
            return session.segments(await asyncio.to_thread(session.analyse, message))
        msg = parse_client_message(message)
        if not isinstance(msg, Start):
            return session.handle(msg)
        return await self.host.begin(conn, msg)


def utf8_size(text: str) -> int:
    """The bytes ``text`` took on the wire (a character is 1 to 4 of them)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
