"""The gateway core: clients' sessions in, audio events to Kafka, results back to the right client.

The I/O shell around :class:`gateway.session.ClientSession`, for every kind of client alike
(:class:`gateway.link.ClientLink`): it starts, resumes and takes over sessions, paces their audio,
executes their outputs through each one's outbox (:mod:`gateway.outbox`), delivers results and backfills
a resumed session. Its rooms: the WebSocket carrier (:mod:`gateway.websocket`: the listener and each
connection's loop), its handshake (:mod:`gateway.handshake`) and link (:mod:`gateway.connection`),
admission (:mod:`gateway.admission`), the HTTP port (:mod:`gateway.http`, with the REST API of
:mod:`gateway.openai_api`), session state (:mod:`gateway.store`) and the results fan-out
(:mod:`gateway.results`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Coroutine
from functools import partial
from typing import Any

from websockets.asyncio.server import Server

from core.audio.vad import DualVad, SileroVad, find_silero_model
from core.engines.translate import TranslationRouter, readable_langs
from core.settings import Settings
from gateway import metrics as m
from gateway.admission import Admission
from gateway.auth import ANONYMOUS, Authenticator, Principal
from gateway.delivery import MissedResults, deliver_to
from gateway.handshake import Handshake, server_tls
from gateway.http import GatewayHttp, Health
from gateway.link import ClientLink
from gateway.openai_api import AudioApi
from gateway.outbox import Outbox, Outboxes, OutboxFull
from gateway.pacing import KeyPacers
from gateway.results import ResultRouter
from gateway.session import Output, Produce, SaveState, ToClient
from gateway.store import SessionStore
from gateway.upkeep import KafkaWatch, keep_sessions
from gateway.viewers import Viewers
from gateway.watch import ViewerEvents
from gateway.websocket import WebSocketClients
from schemas.messages import ErrorMsg, Start
from schemas.records import (
    AUDIO_SAMPLE_RATE_HZ,
    PCM16_SAMPLE_BYTES,
    AudioEventKind,
    Result,
    SessionState,
)
from streams.deadletter import DeadLetters
from streams.endpoint import KafkaEndpoint
from streams.errors import KafkaUnavailable
from streams.follower import TopicFollower
from streams.producer import EventProducer
from streams.reader import read_session_positions, read_session_results
from streams.topics import Codecs, ensure_topics, topic_specs

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.gateway_id = settings.gateway_id or f"{socket.gethostname()}-{os.getpid()}"
        self.topics = topic_specs(settings)
        self.codecs = Codecs.create(settings, self.topics)
        self.kafka = KafkaEndpoint.from_settings(settings)
        self.producer = EventProducer(self.kafka, self.topics, self.codecs)
        self.dead_letters = DeadLetters("gateway", self.producer.send_dead_letter)
        self.store = SessionStore(
            self.kafka,
            self.topics.sessions.name,
            self.codecs,
            self.dead_letters,
            self._on_state,
            delete=self.producer.delete_session,
            on_gone=lambda state: self.viewers.session_gone(state),
        )
        self.router = ResultRouter(self.kafka, self.topics.results.name, self.codecs, self.deliver, self.dead_letters)
        routes = TranslationRouter.from_settings(settings).routes()  # worked out once: GET /languages and viewers
        self.viewers = Viewers(
            settings,
            self.gateway_id,
            self.store,
            # a broadcast's results so far (an unreadable one is only logged: the fan-out dead-letters it)
            lambda sid: read_session_positions(
                self.kafka, self.topics.results.name, self.codecs, sid, DeadLetters("viewers", None)
            ),
            self.producer.send_audience,
            self.producer.delete_audience,
            readable_langs(routes).__getitem__,
            self._audience_changed,
        )
        self.audiences = TopicFollower(
            self.kafka,
            self.topics.audiences.name,
            self.codecs.audience,
            self.viewers.audience_record,
            self.dead_letters,
            from_start=True,
            tombstones=True,
        )
        self.clients: dict[str, ClientLink] = {}  # started sessions, by session id
        self.missed = MissedResults(
            lambda sid, since_ms: read_session_results(
                self.kafka, self.topics.results.name, self.codecs, sid, self.dead_letters, since_ms
            ),
            self.clients.get,
        )
        self.kafka_watch = KafkaWatch(self.producer.kafka_reachable)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        limit_bytes = int(settings.outage_buffer_s * AUDIO_SAMPLE_RATE_HZ) * PCM16_SAMPLE_BYTES
        self.outboxes = Outboxes(limit_bytes, settings.kafka_write_timeout_s, settings.outage_buffer_s)
        self.auth = Authenticator.from_settings(settings)
        self.websocket = WebSocketClients(
            self,
            Handshake(self.auth, settings.allowed_origins, settings.public_hosts, settings.gateway_host),
            self.viewers,
        )
        self.http = GatewayHttp(
            AudioApi(self),
            ViewerEvents(self.viewers),
            self.auth,
            self.health,
            lambda: {"ws_port": self.port, "tls": self.tls is not None, "auth": self.auth.required},
            routes,  # what GET /languages says
            metrics_auth=settings.metrics_auth,
            max_upload_bytes=settings.api_max_upload_bytes,
        )
        self.admission: Admission[ClientLink] = Admission(
            settings.max_sessions, settings.max_sessions_per_key, settings.max_unstarted_connections
        )
        self._last_epoch = 0  # epochs given out here only grow: two connections never share one
        self.pacers = KeyPacers(settings.max_realtime_factor, settings.key_realtime_factor, settings.audio_burst_s)
        self.tls = server_tls(settings)
        self._silero_path = find_silero_model(settings.silero_model_path) if settings.vad_vote != "webrtc" else None
        self._ws: Server | None = None
        self.port = settings.gateway_port
        self.health_port = settings.health_port

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        await ensure_topics(self.kafka, self.topics.all())
        await self.producer.start()
        await self.store.start()
        await self.router.start()
        await self.audiences.start()
        self._tasks = [
            asyncio.create_task(self.kafka_watch.run(), name="kafka-probe"),
            asyncio.create_task(self.viewers.run(), name="viewers"),
            asyncio.create_task(
                keep_sessions(
                    self.s.session_resume_ttl_s,
                    self._refresh_live,
                    self.store.expired,
                    self.clients.__contains__,
                    self.producer.delete_session,
                ),
                name="session-keeper",
            ),
        ]
        self._ws = await self.websocket.serve(self.s.gateway_host, self.s.gateway_port, self.tls)
        self.port = self._ws.sockets[0].getsockname()[1]
        self.health_port = await self.http.start(self.s.gateway_host, self.s.health_port, self.tls)
        log.info(
            "gateway %s: %s://%s:%d, health %s://%s:%d/healthz, authentication %s",
            self.gateway_id,
            "wss" if self.tls else "ws",
            self.s.gateway_host,
            self.port,
            "https" if self.tls else "http",
            self.s.gateway_host,
            self.health_port,
            "required" if self.auth.required else "off",
        )

    async def stop(self) -> None:
        """Close every client (their open utterances are ended on Kafka), give the outboxes up to
        KAFKA_WRITE_TIMEOUT_S to write what they hold, then stop."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        await self.outboxes.close(self.s.kafka_write_timeout_s)
        background = list(self._background)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await self.viewers.stop()
        await self.audiences.stop()
        await self.router.stop()
        await self.store.stop()
        await self.producer.stop()
        await self.http.stop()

    def health(self) -> Health:
        """Whether this gateway can take a new session (``gateway.http``: 200 only then)."""
        return Health(
            gateway_id=self.gateway_id,
            serving=self.router.running and self.store.running and self._ws is not None,
            kafka_ok=self.kafka_watch.ok,
            saturated=self.admission.saturated(len(self.clients)),
            clients=len(self.clients),
            max_sessions=self.s.max_sessions,
            unstarted=self.admission.unstarted,
        )

    async def _refresh_live(self) -> None:
        for conn in list(self.clients.values()):
            await self.apply(conn, conn.session.keepalive())

    # -- clients ----------------------------------------------------------------------------------
    def vad(self) -> DualVad:
        return DualVad.from_settings(self.s, SileroVad(self._silero_path) if self._silero_path else None)

    async def release(self, conn: ClientLink) -> None:
        """The connection is gone (or its HTTP request answered): its open utterance is ended, and it no
        longer counts against the limits nor gets results."""
        session = conn.session
        try:
            await self.apply(conn, session.disconnect())
        except Exception:
            log.exception("could not end the open utterance of session %s", session.session_id)
        finally:  # even when cancelled (an HTTP client that hung up): the slot is never leaked
            if conn.outbox is not None:
                self._spawn(self.outboxes.drain(conn.outbox))
            if session.session_id and self.clients.get(session.session_id) is conn:
                del self.clients[session.session_id]
            self.admission.released(conn, conn.principal, started=session.started)
            if conn.backfill_task is not None:
                conn.backfill_task.cancel()
            conn.done.set()

    def connected(self, conn: ClientLink) -> None:
        """Count a new connection as unstarted; past MAX_UNSTARTED_CONNECTIONS the one that has waited
        longest is closed (``gateway.admission``)."""
        oldest = self.admission.connected(conn)
        if oldest is not None:
            m.ERRORS.labels("start_timeout").inc()
            oldest.close_with(
                ErrorMsg(code="start_timeout", message="too many connections are waiting to start", fatal=True)
            )

    async def pace(self, conn: ClientLink, audio_s: float) -> None:
        """Hold the frame back while its session, or all sessions of its key together, send audio faster
        than their limit; the client is told once."""
        key = None if conn.principal is ANONYMOUS else conn.principal.name
        delay_s, limit = self.pacers.delay(conn.pacer, key, audio_s, asyncio.get_running_loop().time())
        if delay_s <= 0:
            return
        m.PACED_S.inc(delay_s)
        if not conn.paced:
            conn.paced = True
            conn.enqueue(
                ErrorMsg(
                    code="rate_limited",
                    message=f"audio arrives faster than {limit} (after a {self.s.audio_burst_s:g} s burst);"
                    " it is accepted at that pace",
                )
            )
        await conn.hold(delay_s)

    async def begin(self, conn: ClientLink, msg: Start) -> list[Output]:
        session = conn.session
        session.validate(msg)  # a bad start fails before anything happens to the session's owner
        prior = None
        if msg.session_id:
            prior = await self._stored_state(msg.session_id)
            # the connection that has the session now ends its open utterance before this one begins; two
            # resumes at once with one token: the first spends it, the other is refused
            while (old := self.clients.get(msg.session_id)) not in (None, conn):
                assert old is not None
                # checked against the newest state, the live connection's: its token may be newer than the
                # store's (two resumes with the same token, the first not yet stored)
                session.authorize_resume(msg, old.session.state or prior, conn.principal.name)
                await self._supersede(old)
                prior = await self._stored_state(msg.session_id)
            session.authorize_resume(msg, prior, conn.principal.name)  # before anything is written
        # from here to the registration no await: the limits hold however many start at once
        self.admissible(conn.principal)
        outputs = session.start(msg, prior, conn.principal.name, min_epoch=self._last_epoch + 1)
        self._last_epoch = session.epoch
        assert session.session_id is not None
        self.admission.started(conn, conn.principal)
        self.clients[session.session_id] = conn
        self._audience_changed(session.session_id)  # a resumed broadcast's viewers may read other languages
        if prior is not None:  # results that came while the client was away
            MissedResults.expect(conn, prior, msg.received_up_to)
        return outputs

    async def _stored_state(self, session_id: str) -> SessionState | None:
        """The session's newest state, or :class:`KafkaUnavailable` at once when Kafka is known to be away
        (a resume is answered promptly, not after every timeout in turn)."""
        if not self.kafka_watch.ok:
            raise KafkaUnavailable("Kafka is unreachable just now")
        try:
            return await self.store.get(session_id, self.s.kafka_write_timeout_s)
        except TimeoutError:
            limit = self.s.kafka_write_timeout_s
            raise KafkaUnavailable(f"the sessions topic could not be read in {limit:g} s") from None

    def admissible(self, who: Principal) -> None:
        """Raise unless a new session of ``who`` fits MAX_SESSIONS and the key's own limit."""
        self.admission.check(who, len(self.clients))

    async def _supersede(self, old: ClientLink, timeout_s: float = 10.0) -> None:
        """Another connection resumed ``old``'s session: close ``old`` without letting it write session
        state again, and wait until its handler has ended its open utterance on Kafka."""
        if not old.session.superseded:
            old.session.superseded = True
            m.TAKEOVERS.inc()
            old.close_with(
                ErrorMsg(
                    code="session_taken_over",
                    message="this session was resumed on another connection",
                    fatal=True,
                ),
                code=4001,
            )
        try:
            await asyncio.wait_for(old.done.wait(), timeout_s)
        except TimeoutError:
            log.warning("the superseded connection of %s did not close in %g s", old.session.session_id, timeout_s)
            sid = old.session.session_id
            if sid is not None and self.clients.get(sid) is old:
                del self.clients[sid]  # it is closing; it writes no state and gets no results any more

    def _on_state(self, state: SessionState) -> None:
        """A newer state of a session connected here means another gateway took it over; a broadcast's
        newer state may let go of its viewers (a rotated token, an ended broadcast)."""
        conn = self.clients.get(state.session_id)
        if conn is not None and state.epoch > conn.session.epoch:
            self._spawn(self._supersede(conn))
        self.viewers.state_changed(state)

    def _audience_changed(self, session_id: str | None) -> None:
        """Viewers of a broadcast changed somewhere (None: any may have, as time passed): its speaker's
        session, if here, asks for the languages they read."""
        conns = [self.clients.get(session_id)] if session_id is not None else list(self.clients.values())
        for conn in conns:
            if conn is not None and conn.session.broadcasting:
                conn.session.audience_langs = self.viewers.audience_langs(conn.session.session_id or "")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """A background task that is kept until it ends and whose failure is logged."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failed_task)

    async def apply(self, conn: ClientLink, outputs: list[Output]) -> None:
        """Execute a session's outputs: messages to its client, writes to its outbox (``gateway.outbox``)."""
        for out in outputs:
            if isinstance(out, ToClient):
                conn.enqueue(out.message)
            elif isinstance(out, Produce):
                ev = out.event
                try:
                    await self._outbox(conn).put_speech(partial(self.producer.send_audio, ev), len(ev.pcm))
                except OutboxFull:
                    raise self.outboxes.overflow(self._outbox(conn), ev.audio_offset_ms) from None
                if ev.kind is AudioEventKind.CHUNK:
                    m.CHUNKS.inc()
                else:
                    m.SEGMENTS.labels(ev.end_reason or "end").inc()
            elif isinstance(out, SaveState):
                stored = self._outbox(conn).put(partial(self.producer.send_session, out.state), durable=out.durable)
                if stored is not None:
                    try:
                        await asyncio.wait_for(asyncio.shield(stored), self.s.kafka_write_timeout_s)
                    except TimeoutError:
                        limit = self.s.kafka_write_timeout_s
                        raise KafkaUnavailable(f"Kafka did not store a write in {limit:g} s") from None

    def _outbox(self, conn: ClientLink) -> Outbox:
        if conn.outbox is None:
            conn.outbox = self.outboxes.open(f"session {conn.session.session_id}")
        return conn.outbox

    def backfill(self, conn: ClientLink) -> None:
        self.missed.start(conn)

    def deliver(self, result: Result, position: int) -> None:
        if result.version != "live":
            return
        conn = self.clients.get(result.session_id)
        if conn is not None:
            deliver_to(conn, result)
        self.viewers.deliver(result, position)


def _log_failed_task(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task failed", exc_info=task.exception())


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
