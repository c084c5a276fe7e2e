"""Streams an audio source to the gateway from a background thread and hands every server message to
the Qt GUI thread through a signal."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from PySide6.QtCore import QThread, Signal
from websockets.asyncio.client import connect

from babelstream.desktop.audio import AudioSource


class StreamingThread(QThread):
    message = Signal(dict)
    failed = Signal(str)

    def __init__(self, url: str, source: AudioSource, source_lang: str | None, target_lang: str | None) -> None:
        super().__init__()
        self.url = url
        self.source = source
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.session_id: str | None = None
        self._stop = False

    def stop(self) -> None:
        self._stop = True
        self.source.stop()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as e:
            self.failed.emit(f"{type(e).__name__}: {e}")

    async def _run(self) -> None:
        start: dict[str, Any] = {"type": "start", "sample_rate": self.source.sample_rate_hz, "encoding": "pcm_s16le"}
        if self.source_lang:
            start["source_lang"] = self.source_lang
        if self.target_lang:
            start.update(target_lang=self.target_lang, translate=True)
        async with connect(self.url) as ws:
            await ws.send(json.dumps(start))

            async def reader() -> None:
                async for raw in ws:
                    msg = json.loads(raw)
                    if msg.get("type") == "ready":
                        self.session_id = msg["session_id"]
                    self.message.emit(msg)

            read = asyncio.create_task(reader())
            async for frame in self.source.frames():
                if self._stop:
                    break
                await ws.send(frame)
            await ws.send(json.dumps({"type": "stop"}))
            # keep receiving finals and translations until asked to stop (or the server closes)
            while not self._stop and not read.done():
                await asyncio.sleep(0.05)
            read.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await read
