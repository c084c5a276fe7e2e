"""What the gateway core knows of a client, whatever carries it, and what a carrier may ask of the core.

A :class:`ClientLink` is one client of one session: a WebSocket (:mod:`gateway.connection`), an HTTP
upload (:mod:`gateway.openai_api`), and the kinds still to come (broadcast viewers, other live APIs).
The core (:mod:`gateway.server`) starts, paces, feeds and releases sessions through this one type and
never asks which kind it holds: messages for the client go to :meth:`ClientLink.enqueue`, a fatal end
to :meth:`ClientLink.close_with`, and pacing waits in :meth:`ClientLink.hold`. :class:`SessionHost` is
the core as a carrier sees it, so a carrier's module needs no import of the core's (no import circle).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Protocol

from gateway.auth import Principal
from gateway.outbox import Outbox
from gateway.pacing import AudioPacer
from gateway.session import ClientSession, Output
from schemas.messages import ErrorMsg, ServerMessage, Start

if TYPE_CHECKING:
    from core.audio.vad import DualVad
    from core.settings import Settings
    from gateway.auth import Authenticator


class ClientLink(ABC):
    """One client of one session. ``pacer``: its own real-time limit (None: none of its own; its key's
    limit still applies); ``tells_pacing``: whether it is told once that its audio is being paced."""

    def __init__(self, session: ClientSession, principal: Principal, pacer: AudioPacer | None, tells_pacing: bool):
        self.session = session
        self.principal = principal
        self.pacer = pacer
        self.paced = not tells_pacing  # told once that its audio is being paced (or never to be)
        self.slow = False  # closed for not reading its messages
        self.backfill_since_ms: int | None = None  # set by a resume: results to deliver again from then
        self.backfill_after_segment = -1
        self.backfill_task: asyncio.Task[None] | None = None  # delivering them (the core's)
        self.done = asyncio.Event()  # set once the core has released it (its open utterance ended)
        self.outbox: Outbox | None = None  # its writes to Kafka (made by the core on its first)

    @abstractmethod
    def enqueue(self, msg: ServerMessage) -> None:
        """A message for the client; never blocks (a client that does not read is closed instead)."""

    @abstractmethod
    def close_with(self, error: ErrorMsg, code: int = 1008) -> None:
        """End the client's connection with a fatal error (its carrier then releases it)."""

    async def hold(self, delay_s: float) -> None:
        """Wait ``delay_s`` before taking more of its audio (pacing)."""
        await asyncio.sleep(delay_s)


class SessionHost(Protocol):
    """The gateway core, as a carrier of sessions (an HTTP API, say) uses it."""

    s: Settings
    gateway_id: str
    auth: Authenticator

    def vad(self) -> DualVad: ...
    def admissible(self, who: Principal) -> None: ...
    def connected(self, link: ClientLink) -> None: ...
    def backfill(self, link: ClientLink) -> None: ...
    async def begin(self, link: ClientLink, msg: Start) -> list[Output]: ...
    async def apply(self, link: ClientLink, outputs: list[Output]) -> None: ...
    async def pace(self, link: ClientLink, audio_s: float) -> None: ...
    async def release(self, link: ClientLink) -> None: ...
