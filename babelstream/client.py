"""A WebSocket client for the gateway: streams audio at real-time pace (or faster) and collects results.
Used by ``babelstream stream``, the load generator, the benchmarks and the end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from schemas.records import AUDIO_SAMPLE_RATE_HZ, MAX_MESSAGE_BYTES, PCM16_SAMPLE_BYTES


@dataclass
class StreamReport:
    session_id: str = ""
    resume_token: str | None = None  # issued with a new session; needed to resume it
    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_end_monotonic: float = 0.0
    first_interim_s: float | None = None
    final_after_end_s: list[float] = field(default_factory=list)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    @property
    def finals(self) -> list[dict[str, Any]]:
        return sorted(self.of_type("final"), key=lambda m: m["utterance_index"])

    @property
    def text(self) -> str:
        return " ".join(m["text"] for m in self.finals if m["text"])

    @property
    def translations(self) -> list[dict[str, Any]]:
        return sorted(self.of_type("translation"), key=lambda m: m["utterance_index"])

    @property
    def targets(self) -> list[str]:
        """The languages the gateway said this session's speech is translated into."""
        ready = (self.of_type("langs") or self.of_type("ready"))[-1:]
        if not ready:
            return []
        return ready[0].get("target_langs") or ([ready[0]["target_lang"]] if ready[0].get("target_lang") else [])

    def translated(self, segments: set[int]) -> bool:
        """Whether each of ``segments`` has its translation (or a translation error) in every target."""
        have = {(m["utterance_index"], m["target_lang"]) for m in self.translations} | {
            (m["utterance_index"], m.get("target_lang"))
            for m in self.of_type("error")
            if m.get("code") in ("unsupported_pair", "translation_failed")
        }
        return {(s, t) for s in segments for t in self.targets} <= have


async def stream_audio(
    url: str,
    pcm: bytes,
    *,
    sample_rate: int = AUDIO_SAMPLE_RATE_HZ,
    source_lang: str | None = None,
    target_lang: str | None = None,
    translate: bool = False,
    target_langs: list[str] | None = None,
    session_id: str | None = None,
    pace: float = 1.0,
    frame_ms: int = 100,
    trailing_silence_ms: int = 1500,
    wait_translations: bool | None = None,
    timeout_s: float = 120.0,
    on_message: Callable[[dict[str, Any]], None] | None = None,
    received_up_to: int | None = None,
    resume_token: str | None = None,
    api_key: str | None = None,
    ssl: SSLContext | None = None,
    prompt: str | None = None,
    hotwords: str | None = None,
    broadcast: bool = False,
    public: bool = False,
) -> StreamReport:
    """Send 16-bit mono PCM in ``frame_ms`` frames, ``pace`` x real time (0 = as fast as possible),
    then ``stop`` and wait for the finals (and translations) of every utterance."""
    wait_translations = translate if wait_translations is None else wait_translations
    report = StreamReport()
    # fields left out are inherited from the stored session when resuming (see the protocol)
    start_msg: dict[str, Any] = {"type": "start", "sample_rate": sample_rate, "encoding": "pcm_s16le"}
    for key, value in (
        ("source_lang", source_lang),
        ("target_lang", target_lang),
        ("prompt", prompt),
        ("hotwords", hotwords),
    ):
        if value is not None:
            start_msg[key] = value
    if target_langs:
        start_msg["target_langs"] = target_langs
    if translate:
        start_msg["translate"] = True
    if session_id:
        start_msg["session_id"] = session_id
        start_msg["resume_token"] = resume_token
    if received_up_to is not None:
        start_msg["received_up_to"] = received_up_to
    if broadcast:
        start_msg.update(broadcast=True, public=public)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    async with (
        asyncio.timeout(timeout_s),
        connect(url, max_size=MAX_MESSAGE_BYTES, additional_headers=headers, ssl=ssl) as ws,
    ):
        await ws.send(json.dumps(start_msg))
        ready = json.loads(await ws.recv())
        if ready.get("type") != "ready":
            raise RuntimeError(f"gateway refused the session: {ready}")
        report.session_id = ready["session_id"]
        report.resume_token = ready.get("resume_token") or resume_token
        report.messages.append(ready)
        if on_message is not None:
            on_message(ready)
        reader = asyncio.create_task(_read(ws, report, on_message))
        t_start = time.monotonic()
        step = sample_rate * PCM16_SAMPLE_BYTES * frame_ms // 1000
        audio = pcm + bytes(sample_rate * PCM16_SAMPLE_BYTES * trailing_silence_ms // 1000)
        for i, off in enumerate(range(0, len(audio), step)):
            await ws.send(audio[off : off + step])
            if pace > 0:
                delay = t_start + (i + 1) * frame_ms / 1000 / pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        report.audio_end_monotonic = time.monotonic()
        await ws.send(json.dumps({"type": "stop"}))
        while True:
            ended = {m["utterance_index"] for m in report.of_type("utterance_end")}
            done = {m["utterance_index"] for m in report.of_type("final")} | {
                m["utterance_index"] for m in report.of_type("error") if m.get("code") == "stt_failed"
            }
            stopped = bool(report.of_type("stopped"))
            if stopped and ended <= done and (not wait_translations or report.translated(ended)):
                break
            if reader.done():
                reader.result()
                break
            await asyncio.sleep(0.05)
        reader.cancel()
        interims = report.of_type("realtime")
        if interims:
            report.first_interim_s = interims[0]["_t"] - t_start
    return report


async def _read(
    ws: ClientConnection, report: StreamReport, on_message: Callable[[dict[str, Any]], None] | None
) -> None:
    async for raw in ws:
        msg = json.loads(raw)
        msg["_t"] = time.monotonic()
        report.messages.append(msg)
        if msg.get("type") == "final" and report.audio_end_monotonic:
            report.final_after_end_s.append(msg["_t"] - report.audio_end_monotonic)
        if on_message is not None:
            on_message(msg)


async def watch_broadcast(
    url: str,
    broadcast_id: str,
    *,
    viewer_token: str | None = None,
    lang: str | None = None,
    on_message: Callable[[dict[str, Any]], None],
    ssl: SSLContext | None = None,
) -> None:
    """Watch a broadcast (the gateway's ``/watch`` path) until it ends, handing every message to
    ``on_message``; a lost connection is resumed with the last caption's position."""
    after, retries = -1, 0
    while True:
        try:
            async with connect(f"{url.rstrip('/')}/watch", max_size=MAX_MESSAGE_BYTES, ssl=ssl) as ws:
                watch = {"type": "watch", "broadcast_id": broadcast_id, "after": after, "lang": lang}
                await ws.send(json.dumps({**watch, "viewer_token": viewer_token}))
                async for raw in ws:
                    msg = json.loads(raw)
                    retries = 0
                    if msg["type"] == "final":
                        after = max(after, msg["position"])
                    on_message(msg)
                    if msg["type"] == "ended" or (msg["type"] == "error" and msg.get("fatal")):
                        return
        except (OSError, ConnectionClosed):
            retries += 1
            if retries > 10:
                raise
            await asyncio.sleep(min(10.0, 0.5 * 2**retries))
