"""The gateway service: WebSocket clients in, audio events to Kafka, results back to the right client.

I/O shell around :class:`gateway.session.ClientSession`. Every client has a bounded outgoing queue; a
client that stops reading is closed (code 1008) instead of slowing anyone else. Health (``/healthz``),
Prometheus metrics (``/metrics``) and the web client are served on ``HEALTH_PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from babelstream.audio.vad import DualVad, SileroVad, find_silero_model
from babelstream.settings import Settings
from gateway import metrics as m
from gateway.results import ResultRouter
from gateway.session import ClientSession, Output, Produce, SaveState, ToClient
from gateway.store import SessionStore
from schemas.messages import ErrorMsg, ProtocolError, ServerMessage, Start, parse_client_message
from schemas.records import AudioEventKind, Result, ResultKind, now_ms
from streams.deadletter import DeadLetters
from streams.producer import EventProducer
from streams.reader import read_session_results
from streams.topics import Codecs, ensure_topics, topic_specs

log = logging.getLogger(__name__)

BACKFILL_MARGIN_MS = 60_000  # results up to this long before the disconnect are looked at again


class Connection:
    def __init__(self, ws: ServerConnection, session: ClientSession, queue_max: int) -> None:
        self.ws = ws
        self.session = session
        self.queue: asyncio.Queue[ServerMessage | None] = asyncio.Queue(maxsize=queue_max)
        self.slow = False
        self.backfill_since_ms: int | None = None
        self.backfill_after_segment = -1

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


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.gateway_id = settings.gateway_id or f"{socket.gethostname()}-{os.getpid()}"
        self.topics = topic_specs(settings)
        self.codecs = Codecs.create(settings, self.topics)
        self.producer = EventProducer(settings.bootstrap, self.topics, self.codecs)
        self.dead_letters = DeadLetters("gateway", self.producer.send_dead_letter)
        self.store = SessionStore(settings.bootstrap, self.topics.sessions.name, self.codecs, self.dead_letters)
        self.router = ResultRouter(
            settings.bootstrap, self.topics.results.name, self.codecs, self.deliver, self.dead_letters
        )
        self.clients: dict[str, Connection] = {}
        self.connections = 0
        self._silero_path = find_silero_model(settings.silero_model_path) if settings.vad_vote != "webrtc" else None
        self._ws: Server | None = None
        self._http: web.AppRunner | None = None
        self.port = settings.gateway_port
        self.health_port = settings.health_port

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await ensure_topics(self.s.bootstrap, self.topics.all())
        await self.producer.start()
        await self.store.start()
        await self.router.start()
        self._ws = await serve(
            self.handler,
            self.s.gateway_host,
            self.s.gateway_port,
            max_size=self.s.max_frame_bytes * 16,
            max_queue=32,
            ping_interval=20,
            ping_timeout=20,
        )
        self.port = self._ws.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/config.json", self._client_config)
        static = resources.files("gateway").joinpath("static")
        if static.is_dir():
            app.router.add_get("/", lambda _: web.FileResponse(str(static.joinpath("index.html"))))
            app.router.add_static("/static/", str(static))
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.s.gateway_host, self.s.health_port)
        await site.start()
        self.health_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info(
            "gateway %s: ws://%s:%d, health http://%s:%d/healthz",
            self.gateway_id,
            self.s.gateway_host,
            self.port,
            self.s.gateway_host,
            self.health_port,
        )

    async def stop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        await self.router.stop()
        await self.store.stop()
        await self.producer.stop()
        if self._http is not None:
            await self._http.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self.router.running and self._ws is not None
        body = {"status": "ok" if ok else "degraded", "gateway_id": self.gateway_id, "clients": len(self.clients)}
        return web.json_response(body, status=200 if ok else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _client_config(self, _: web.Request) -> web.Response:
        return web.json_response({"ws_port": self.port})

    # -- clients ----------------------------------------------------------------------------------
    def _vad(self) -> DualVad:
        return DualVad.from_settings(self.s, SileroVad(self._silero_path) if self._silero_path else None)

    async def handler(self, ws: ServerConnection) -> None:
        if self.connections >= self.s.max_sessions:
            await ws.send(
                ErrorMsg(code="server_busy", message="too many sessions on this gateway", fatal=True).to_json()
            )
            await ws.close(1013, "server_busy")
            return
        self.connections += 1
        m.CLIENTS.inc()
        session = ClientSession(self.s, self.gateway_id, self._vad)
        conn = Connection(ws, session, self.s.client_queue_max)
        writer = asyncio.create_task(conn.writer())
        backfill: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    async with asyncio.timeout(self.s.session_idle_timeout_s):
                        message = await ws.recv()
                except TimeoutError:
                    conn.enqueue(
                        ErrorMsg(
                            code="idle_timeout",
                            message=f"nothing received for {self.s.session_idle_timeout_s:g} s",
                            fatal=True,
                        )
                    )
                    break
                try:
                    await self._apply(conn, await self._on_message(conn, message))
                    if conn.backfill_since_ms is not None:
                        backfill = asyncio.create_task(self._backfill(conn, conn.backfill_since_ms))
                        conn.backfill_since_ms = None
                except ProtocolError as e:
                    conn.enqueue(e.to_message())
                    if e.fatal:
                        break
                if conn.slow:
                    break
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("session %s failed", session.session_id)
            conn.enqueue(ErrorMsg(code="internal", message="internal error; the session was closed", fatal=True))
        finally:
            try:
                await self._apply(conn, session.disconnect())
            except Exception:
                log.exception("could not end the open utterance of session %s", session.session_id)
            if session.session_id and self.clients.get(session.session_id) is conn:
                del self.clients[session.session_id]
            if backfill is not None:
                backfill.cancel()
            await conn.finish()
            with contextlib.suppress(asyncio.TimeoutError, ConnectionClosed):
                await asyncio.wait_for(writer, 5)
            writer.cancel()
            self.connections -= 1
            m.CLIENTS.dec()

    async def _on_message(self, conn: Connection, message: str | bytes) -> list[Output]:
        session = conn.session
        if len(message) > self.s.max_frame_bytes:
            raise ProtocolError(
                "frame_too_large", f"frame of {len(message)} bytes exceeds MAX_FRAME_BYTES={self.s.max_frame_bytes}"
            )
        if isinstance(message, bytes):
            m.AUDIO_BYTES.inc(len(message))
            return session.audio(message)
        msg = parse_client_message(message)
        if not isinstance(msg, Start):
            return session.handle(msg)
        prior = await self.store.get(msg.session_id) if msg.session_id else None
        outputs = session.start(msg, prior)
        assert session.session_id is not None
        old = self.clients.get(session.session_id)
        if old is not None and old is not conn:  # the same session reconnected: the newest wins
            await old.ws.close(1000, "session resumed on another connection")
        self.clients[session.session_id] = conn
        if prior is not None:  # results that came while the client was away
            conn.backfill_since_ms = prior.updated_at_ms - BACKFILL_MARGIN_MS
            conn.backfill_after_segment = -1 if msg.received_up_to is None else msg.received_up_to
        return outputs

    async def _apply(self, conn: Connection, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, ToClient):
                conn.enqueue(out.message)
            elif isinstance(out, Produce):
                ev = out.event
                fut = await self.producer.send_audio(ev)
                fut.add_done_callback(_log_failed_delivery)
                if ev.kind is AudioEventKind.CHUNK:
                    m.CHUNKS.inc()
                else:
                    m.SEGMENTS.labels(ev.end_reason or "end").inc()
            elif isinstance(out, SaveState):
                (await self.producer.send_session(out.state)).add_done_callback(_log_failed_delivery)

    async def _backfill(self, conn: Connection, since_ms: int) -> None:
        """Deliver a resumed session's results produced while it was disconnected (duplicates are dropped)."""
        sid = conn.session.session_id
        assert sid is not None
        try:
            results = await read_session_results(
                self.s.bootstrap, self.topics.results.name, self.codecs, sid, self.dead_letters, since_ms
            )
        except Exception:
            log.exception("backfill of session %s failed", sid)
            return
        for r in results:
            if (
                r.kind is not ResultKind.REALTIME
                and r.utterance_index > conn.backfill_after_segment
                and self.clients.get(sid) is conn
            ):
                self._deliver_to(conn, r, observe_latency=False)

    def deliver(self, result: Result) -> None:
        if result.version != "live":
            return
        conn = self.clients.get(result.session_id)
        if conn is not None:
            self._deliver_to(conn, result)

    def _deliver_to(self, conn: Connection, result: Result, observe_latency: bool = True) -> None:
        msg = conn.session.result(result)
        if msg is None:
            return
        conn.enqueue(msg)
        m.RESULTS.labels(msg.type).inc()
        if observe_latency and result.audio_created_at_ms and result.kind is not ResultKind.ERROR:
            m.RESULT_LATENCY_S.labels(msg.type).observe(max(0, now_ms() - result.audio_created_at_ms) / 1000)


def _log_failed_delivery(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        m.ERRORS.labels("kafka_delivery").inc()
        log.error("Kafka delivery failed: %s", fut.exception())


async def run_gateway(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down gracefully: clients are closed (their open utterances are
    ended on Kafka) and the producer is flushed before the process exits."""
    gw = Gateway(settings)
    await gw.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
        log.info("gateway %s shutting down", gw.gateway_id)
    finally:
        await gw.stop()
