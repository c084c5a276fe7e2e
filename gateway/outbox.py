"""A session's writes to Kafka, in order, through broker outages up to a bound.

The handler never waits on Kafka for a frame: the audio events and session states a frame makes are put
here and one writer task per connection stores them in order, a few in flight at a
time, each attempt bounded by ``KAFKA_WRITE_TIMEOUT_S``. While Kafka is away they wait here and are
retried, so the socket keeps being read, keepalives keep flowing and the transcript comes late but whole.
What may wait is bounded by ``OUTAGE_BUFFER_S`` seconds of speech per session (silence is never written):
past it, while Kafka is away, :meth:`put_speech` raises :class:`OutboxFull` and the session ends with
``unavailable`` saying from where its audio was not kept; while Kafka is only slower than the speech
comes, it waits for room instead (back-pressure on the client, as pacing). A state marked ``durable``
(a session's first: its ``ready`` promises a session that can be resumed) is waited for by the handler.

:class:`Outboxes` holds every connection's outbox and its writer task: an outbox outlives its connection
while it drains (:meth:`Outboxes.drain`), and the gateway's stop gives them all a last chance to write.

Order: a record is sent only after every record before it was handed to the producer, and when a send
fails everything not yet stored is sent again from the oldest, so a session's records reach Kafka in the
order they were made (a resend may duplicate one: consumers drop audio by ``seq``, states by epoch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway import metrics as m
from schemas.errors import BabelstreamError
from schemas.messages import ProtocolError
from streams.errors import KafkaRejected, KafkaUnavailable

log = logging.getLogger(__name__)

IN_FLIGHT = 32  # records handed to the producer and not yet stored, per session
RETRY_S = 1.0  # after a failed send, the wait before the next try


class OutboxFull(BabelstreamError):
    """More speech waits for Kafka than ``OUTAGE_BUFFER_S`` allows."""


@dataclass
class Item:
    send: Callable[[], Awaitable[asyncio.Future[object]]]
    audio_bytes: int = 0
    stored: asyncio.Future[None] | None = None  # set once stored, for the handler to wait on


@dataclass(eq=False)  # one per connection, known by identity
class Outbox:
    """``limit_bytes``: speech that may wait; ``timeout_s``: one attempt at one write."""

    limit_bytes: int
    timeout_s: float
    name: str = ""
    _waiting: deque[Item] = field(default_factory=deque)  # not yet handed to the producer
    _in_flight: deque[tuple[Item, asyncio.Future[object]]] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # something to write
    _room: asyncio.Event = field(default_factory=asyncio.Event)  # something stored, or Kafka found away
    audio_bytes: int = 0
    stuck_since_s: float | None = None  # loop time since which nothing could be stored
    refused: KafkaRejected | None = None  # Kafka refused a write for good: nothing more is written

    async def put_speech(self, send: Callable[[], Awaitable[asyncio.Future[object]]], audio_bytes: int) -> None:
        """Queue a write that carries speech. Past the bound: :class:`OutboxFull` while Kafka is away;
        while it is only slower than the speech comes, wait for room (back-pressure, as pacing)."""
        while self.audio_bytes and self.audio_bytes + audio_bytes > self.limit_bytes:
            if self.stuck_since_s is not None:
                m.OUTBOX_OVERFLOWS.inc()
                raise OutboxFull
            self._room.clear()
            await self._room.wait()
        self.put(send, audio_bytes)

    def put(
        self, send: Callable[[], Awaitable[asyncio.Future[object]]], audio_bytes: int = 0, durable: bool = False
    ) -> asyncio.Future[None] | None:
        """Queue one write (never refused: the bound is :meth:`put_speech`'s); returns, for a ``durable``
        one, a future set when it is stored. Once Kafka has refused a write for good: that refusal."""
        if self.refused is not None:
            raise self.refused
        item = Item(send, audio_bytes, asyncio.get_running_loop().create_future() if durable else None)
        self._waiting.append(item)
        self.audio_bytes += audio_bytes
        m.OUTBOX_BYTES.inc(audio_bytes)
        self._wake.set()
        return item.stored

    @property
    def empty(self) -> bool:
        return not self._waiting and not self._in_flight

    async def run(self) -> None:
        """Write until cancelled (the gateway lets it drain after its client is gone)."""
        try:
            while True:
                if self.empty:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                try:
                    await self._step()
                    if self.stuck_since_s is not None:
                        log.info("%s: Kafka stores its writes again", self.name)
                        self.stuck_since_s = None
                except (TimeoutError, KafkaUnavailable) as e:
                    if self.stuck_since_s is None:
                        self.stuck_since_s = asyncio.get_running_loop().time()
                        self._room.set()  # whoever waits for room learns that none will come soon
                        log.info(
                            "%s: waiting for Kafka (%r); %d B of speech kept meanwhile", self.name, e, self.audio_bytes
                        )
                    if not isinstance(e, TimeoutError):
                        self._resend_all()
                        await asyncio.sleep(RETRY_S)
                except KafkaRejected as e:
                    self._refuse(e)
                    return
        finally:
            m.OUTBOX_BYTES.dec(self.audio_bytes)

    async def _step(self) -> None:
        """Hand records to the producer while there is room in flight, then wait for the oldest."""
        while self._waiting and len(self._in_flight) < IN_FLIGHT:
            item = self._waiting[0]
            fut = await asyncio.wait_for(item.send(), self.timeout_s)  # waits for metadata, or buffer room
            self._waiting.popleft()
            self._in_flight.append((item, fut))
            if item.stored is not None:
                break  # nothing after a durable record goes before it is stored
        item, fut = self._in_flight[0]
        await asyncio.wait_for(asyncio.shield(fut), self.timeout_s)  # on a timeout it stays in flight
        self._in_flight.popleft()
        self.audio_bytes -= item.audio_bytes
        m.OUTBOX_BYTES.dec(item.audio_bytes)
        self._room.set()
        if item.stored is not None and not item.stored.done():
            item.stored.set_result(None)

    def _refuse(self, e: KafkaRejected) -> None:
        """Kafka refused a write for good (a record over the cap, no authorization): what waits is dropped, as
        it can go only after that write; whoever waits on a durable one, or puts another, gets ``e``."""
        log.error("%s: Kafka refused a write (%s); %d B of speech dropped", self.name, e, self.audio_bytes)
        self.refused = e
        self._resend_all()
        for item in self._waiting:
            if item.stored is not None and not item.stored.done():
                item.stored.set_exception(e)
                item.stored.exception()  # retrieved here: no "never retrieved" warning when no one waits
        self._waiting.clear()
        m.OUTBOX_BYTES.dec(self.audio_bytes)
        self.audio_bytes = 0
        self._room.set()

    def _resend_all(self) -> None:
        """A send failed: everything in flight goes back before what waits, in order."""
        while self._in_flight:
            item, fut = self._in_flight.pop()
            if not fut.done():
                fut.cancel()
            self._waiting.appendleft(item)


class Outboxes:
    """Every connection's outbox and its writer task. ``limit_bytes``, ``timeout_s``: each outbox's;
    ``outage_buffer_s``: how much more outage a drained outbox (its connection gone) waits out."""

    def __init__(self, limit_bytes: int, timeout_s: float, outage_buffer_s: float) -> None:
        self.limit_bytes = limit_bytes
        self.timeout_s = timeout_s
        self.outage_buffer_s = outage_buffer_s
        self._writers: dict[Outbox, asyncio.Task[None]] = {}

    def open(self, name: str) -> Outbox:
        box = Outbox(self.limit_bytes, self.timeout_s, name)
        self._writers[box] = asyncio.get_running_loop().create_task(box.run())
        return box

    def overflow(self, box: Outbox, offset_ms: int) -> ProtocolError:
        """What the session is told when :class:`OutboxFull` ends it: from which second on its audio was lost."""
        loop_s = asyncio.get_running_loop().time()
        away_s = loop_s - box.stuck_since_s if box.stuck_since_s is not None else 0.0
        return ProtocolError(
            "unavailable",
            f"Kafka has been unreachable for {away_s:.0f} s and this session has kept OUTAGE_BUFFER_S ="
            f" {self.outage_buffer_s:g} s of speech meanwhile: its audio from {offset_ms / 1000:.1f} s on was"
            " not kept (what came before is written when Kafka is back); reconnect and resume shortly",
            fatal=True,
        )

    async def drain(self, box: Outbox) -> None:
        """A connection is gone: its outbox writes on until it is empty (Kafka back) or the outage outlasts
        OUTAGE_BUFFER_S more; then its writer stops."""
        deadline_s = asyncio.get_running_loop().time() + self.outage_buffer_s
        try:
            while not box.empty and asyncio.get_running_loop().time() < deadline_s:
                await asyncio.sleep(0.1)
            if not box.empty:
                log.error("%s: Kafka stayed away; %d B of speech not written", box.name, box.audio_bytes)
        finally:
            writer = self._writers.pop(box, None)
            if writer is not None:
                writer.cancel()

    async def close(self, timeout_s: float) -> None:
        """Give every outbox up to ``timeout_s`` to write what it holds, then stop the writers."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while any(not box.empty for box in self._writers):
                    await asyncio.sleep(0.05)
        writers = list(self._writers.values())
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
