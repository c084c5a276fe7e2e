"""Test helpers for broadcasts: a speaker, results written straight to the results topic, and viewers over
WebSocket and Server-Sent Events that collect what they are sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.settings import load_settings
from schemas.records import Result, ResultKind, Translation
from streams.topics import Codecs, topic_specs
from tests.stack import Stack, recv_type


@dataclass
class Broadcast:
    ws: ClientConnection  # the speaker's connection
    session_id: str
    broadcast_id: str
    viewer_token: str | None
    resume_token: str


async def start_broadcast(ws: ClientConnection, **start: Any) -> Broadcast:
    await ws.send(json.dumps({"type": "start", "broadcast": True, **start}))
    ready = await recv_type(ws, "ready")
    b = ready["broadcast"]
    return Broadcast(ws, ready["session_id"], b["broadcast_id"], b["viewer_token"], ready["resume_token"])


class Results:
    """Writes results of a session to the stack's results topic, as an STT worker would."""

    def __init__(self, stack: Stack) -> None:
        s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
        self.topics = topic_specs(s)
        self.codec = Codecs.create(s, self.topics).result
        self.producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=5)

    async def __aenter__(self) -> Results:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def put(self, *results: Result) -> None:
        for r in results:
            await self.producer.send_and_wait(self.topics.results.name, self.codec.encode(r), key=r.session_id.encode())

    async def raw(self, session_id: str, value: bytes | None) -> None:
        await self.producer.send_and_wait(self.topics.results.name, value, key=session_id.encode())


def final(sid: str, i: int, text: str | None = None, lang: str = "es", targets: list[str] | None = None) -> Result:
    t = targets or []
    return Result(
        sid, i, ResultKind.FINAL, text or f"frase número {i}", language=lang, translate=bool(t), target_langs=t
    )


def translated(f: Result, target: str, text: str) -> Result:
    return Result(
        f.session_id,
        f.utterance_index,
        ResultKind.TRANSLATION,
        f.text,
        language=f.language,
        translate=True,
        target_langs=f.target_langs,
        translation=Translation(f.language or "", target, text, "test"),
    )


@dataclass
class Seen:
    """What a viewer was sent, in order."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def finals(self) -> list[int]:
        return [m["utterance_index"] for m in self.of("final")]

    @property
    def last_position(self) -> int:
        return max((m["position"] for m in self.of("final")), default=-1)


async def watch_ws(url: str, b: Broadcast, **fields: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """A WebSocket viewer: connected, ``watch`` sent, its first answer read."""
    ws = await connect(f"{url}/watch")
    token = fields.pop("viewer_token", b.viewer_token)
    with contextlib.suppress(ConnectionClosed):  # refused at once (too many viewers): the refusal is read below
        await ws.send(json.dumps({"type": "watch", "broadcast_id": b.broadcast_id, "viewer_token": token, **fields}))
    first = json.loads(await asyncio.wait_for(ws.recv(), 20))
    return ws, first


async def read_until(ws: ClientConnection, seen: Seen, done: Any, timeout_s: float = 30.0) -> Seen:
    """Collect the viewer's messages until ``done(seen)``."""
    async with asyncio.timeout(timeout_s):
        while not done(seen):
            seen.messages.append(json.loads(await ws.recv()))
    return seen


async def sse_events(
    url: str, seen: Seen, done: Any, timeout_s: float = 30.0, headers: dict[str, str] | None = None
) -> tuple[int, Seen]:
    """An SSE viewer: read events into ``seen`` until ``done(seen)``; returns the HTTP status (and on a
    refusal its JSON body as the one message)."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        async with http.get(url, headers=headers or {}) as resp:
            if resp.status != 200:
                seen.messages.append(await resp.json())
                return resp.status, seen
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            event: dict[str, str] = {}
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in event:
                        msg = json.loads(event["data"])
                        assert msg["type"] == event["event"], event
                        if "id" in event:
                            assert int(event["id"]) == msg["position"], event
                        seen.messages.append(msg)
                        if done(seen):
                            return 200, seen
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value
    return 200, seen
