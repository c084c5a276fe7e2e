"""The viewers' carriers: a WebSocket on the gateway's ``/watch`` path, and Server-Sent Events at
``GET /v1/broadcasts/{broadcast_id}/events`` on its HTTP port (``EventSource`` and ``curl`` work).

Both take no API key (an audience has none; the viewer token is the broadcast's own read-only secret) and
both hand the viewer to :class:`gateway.viewers.Viewers`. A WebSocket viewer sends ``watch`` within
``VIEWER_START_TIMEOUT_S``, then only ``set_lang`` and ``ping``: a binary frame (audio), a speaker's
message or anything unknown closes it (1008). An SSE viewer says in the query what ``watch`` says
(``lang``, ``token``, ``after``; a reconnecting ``EventSource`` sends ``Last-Event-ID``, which is
``after``); each event's ``event:`` is the message type, its ``data:`` the JSON a WebSocket viewer gets,
its ``id:`` a caption's position. A refusal is an HTTP error with a JSON body, before the stream begins.
``GET /v1/broadcasts/{broadcast_id}`` (the same token) tells a broadcast's languages, viewers and end;
``GET /watch/{broadcast_id}/qr.png`` (the same token) is the viewer link as a QR code.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from http import HTTPStatus
from urllib.parse import quote, urlencode

import segno
from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from gateway import metrics as m
from gateway.connection import keep_alive
from gateway.viewers import ViewerLink, Viewers
from schemas.messages import ErrorMsg, Pong, ProtocolError
from schemas.records import now_ms
from schemas.viewers import SetLang, ViewerPing, Watch, parse_viewer_message, watch_query

log = logging.getLogger(__name__)

WRITER_DRAIN_S = 60.0  # what a closing viewer was sent may take this long to go out (then it is cut)
SSE_HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
# what a refusal's code is over HTTP
HTTP_STATUS = {
    "unknown_broadcast": HTTPStatus.NOT_FOUND,
    "unsupported_language": HTTPStatus.BAD_REQUEST,
    "invalid_message": HTTPStatus.BAD_REQUEST,
    "too_many_languages": HTTPStatus.CONFLICT,
    "broadcast_full": HTTPStatus.TOO_MANY_REQUESTS,
    "too_many_viewers": HTTPStatus.SERVICE_UNAVAILABLE,
    "unavailable": HTTPStatus.SERVICE_UNAVAILABLE,
}


def too_many_viewers(limit: int) -> ProtocolError:
    return ProtocolError("too_many_viewers", f"this gateway serves its {limit} viewers (MAX_VIEWERS)", fatal=True)


class WebSocketViewer(ViewerLink):
    def __init__(self, ws: ServerConnection, queue_max: int) -> None:
        super().__init__(queue_max)
        self.ws = ws

    def abort(self) -> None:
        """Close now: a viewer that reads nothing would hold a closing handshake up too."""
        self.ws.transport.abort()

    async def writer(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while (item := await self.next()) is not None:
                await self.ws.send(item.data)
            await self.ws.close(1000 if not self.slow else 1008)


async def serve_websocket_viewer(viewers: Viewers, ws: ServerConnection) -> None:
    """One WebSocket viewer, from its handshake to its close."""
    s = viewers.s
    link = WebSocketViewer(ws, s.viewer_queue_max)
    if not viewers.admit():
        await ws.send(too_many_viewers(s.max_viewers).to_message().to_json())
        await ws.close(1013, "too_many_viewers")
        return
    writer = asyncio.create_task(link.writer())
    keepalive = asyncio.create_task(keep_alive(ws, s.keepalive_interval_s, s.keepalive_timeout_s))
    try:
        try:
            async with asyncio.timeout(s.viewer_start_timeout_s):
                first = await ws.recv()
        except TimeoutError:
            raise ProtocolError(
                "start_timeout", f"no watch message for {s.viewer_start_timeout_s:g} s", fatal=True
            ) from None
        msg = _viewer_message(first)
        if not isinstance(msg, Watch):
            raise ProtocolError("not_watching", "a viewer's first message is watch", fatal=True)
        await viewers.watch(link, msg)
        while not link.ended:
            msg = _viewer_message(await ws.recv())
            if isinstance(msg, ViewerPing):
                link.send_msg(Pong(time_ms=now_ms()))
            elif isinstance(msg, SetLang):
                try:
                    viewers.set_lang(link, msg.lang)
                except ProtocolError as e:
                    if e.fatal:
                        raise
                    link.send_msg(e.to_message())
            else:
                raise ProtocolError("already_watching", "this connection watches already; send set_lang", fatal=True)
    except ProtocolError as e:
        m.VIEWERS_DROPPED.labels(e.code).inc()
        link.end(e.to_message())
    except ConnectionClosed:
        pass
    except Exception:
        log.exception("viewer of %s failed", link.broadcast_id)
        link.end(ErrorMsg(code="internal", message="internal error; the viewer was closed", fatal=True))
    finally:
        keepalive.cancel()
        viewers.release(link)
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await asyncio.wait_for(writer, WRITER_DRAIN_S)  # the rest of an ended broadcast's transcript
        writer.cancel()


def _viewer_message(frame: str | bytes) -> Watch | SetLang | ViewerPing:
    if isinstance(frame, bytes):
        raise ProtocolError("not_a_viewer_message", "viewers cannot send audio (binary frames)", fatal=True)
    return parse_viewer_message(frame)


class SseViewer(ViewerLink):
    def __init__(self, queue_max: int, request: web.Request) -> None:
        super().__init__(queue_max)
        self.request = request

    def abort(self) -> None:
        """Drop the connection at once: a write it is stuck in (the client reads nothing) fails now; the
        stream has ended (:meth:`ViewerLink.end`), so one that waits for its next item stops too."""
        if self.request.transport is not None:
            self.request.transport.abort()


class ViewerEvents:
    """``GET /v1/broadcasts/{broadcast_id}/events``: a viewer over Server-Sent Events."""

    def __init__(self, viewers: Viewers) -> None:
        self.viewers = viewers

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/broadcasts/{broadcast_id}", self.describe)
        app.router.add_get("/v1/broadcasts/{broadcast_id}/events", self.events)
        app.router.add_get("/watch/{broadcast_id}/qr.png", self.qr_code)

    async def qr_code(self, request: web.Request) -> web.Response:
        """The viewer link (this page's origin, ``/watch/{id}``, the token) as a QR code, for the speaker's
        Share panel; only for a broadcast the token watches (no QR codes of anything else)."""
        broadcast_id, token = request.match_info["broadcast_id"], request.query.get("token")
        try:
            await self.viewers.describe(broadcast_id, token)
        except ProtocolError as e:
            return _refused(e)
        link = f"{request.scheme}://{request.host}/watch/{quote(broadcast_id)}"
        if token:
            link += f"?{urlencode({'token': token})}"
        image = io.BytesIO()
        segno.make_qr(link, error="m").save(image, kind="png", scale=6, border=4)
        return web.Response(body=image.getvalue(), content_type="image/png", headers={"Cache-Control": "no-store"})

    async def describe(self, request: web.Request) -> web.Response:
        """The broadcast's languages, viewers and whether it ended (the same token as its events)."""
        try:
            info = await self.viewers.describe(request.match_info["broadcast_id"], request.query.get("token"))
        except ProtocolError as e:
            return _refused(e)
        return web.json_response(info.model_dump())

    async def events(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        after = request.headers.get("Last-Event-ID") or q.get("after")
        try:
            msg = watch_query(
                {
                    "broadcast_id": request.match_info["broadcast_id"],
                    "viewer_token": q.get("token"),
                    "lang": q.get("lang"),
                    "after": int(after) if after not in (None, "") else None,
                }
            )
        except ProtocolError as e:
            return _refused(e)
        except ValueError:
            return _refused(ProtocolError("invalid_message", f"query: after: {after!r} is no position"))
        viewers = self.viewers
        link = SseViewer(viewers.s.viewer_queue_max, request)
        if not viewers.admit():
            return _refused(too_many_viewers(viewers.s.max_viewers))
        try:
            try:
                await viewers.watch(link, msg)
            except ProtocolError as e:
                return _refused(e)
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
                }
            )
            await response.prepare(request)
            await self._stream(link, response)
            return response
        finally:
            viewers.release(link)

    async def _stream(self, link: SseViewer, response: web.StreamResponse) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(SSE_HEARTBEAT_S):
                        item = await link.next()
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if item is None:
                    return
                head = f"id: {item.position}\n" if item.position is not None else ""
                await response.write(f"{head}event: {item.type}\ndata: {item.data}\n\n".encode())
        except ConnectionError:  # the viewer went away, or was cut off
            return


def _refused(e: ProtocolError) -> web.Response:
    status = HTTP_STATUS.get(e.code, HTTPStatus.BAD_REQUEST)
    return web.json_response({"error": {"code": e.code, "message": e.message}}, status=int(status))
