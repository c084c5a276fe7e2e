"""The gateway's HTTP port (``HEALTH_PORT``): health, metrics, languages, the web client, the REST API.

``/healthz`` (:class:`Health`: 200 only when this gateway can take a new session), ``/metrics``
(Prometheus; behind the credentials when ``METRICS_AUTH``), ``/languages`` (every language, and the
translation routes from each), ``/config.json``, ``/`` (the web client) and ``/watch/{id}`` (a
broadcast's viewer page), the OpenAI-compatible
audio API (``/v1/audio/...``, :mod:`gateway.openai_api`) and broadcast viewers over Server-Sent Events
(``/v1/broadcasts/{id}/events``, :mod:`gateway.watch`). A request whose client hangs up is cancelled: an
API upload's session then ends at once.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.auth import Authenticator, AuthError
from gateway.openai_api import AudioApi
from gateway.watch import ViewerEvents
from schemas.langs import LANGUAGES

UPLOAD_OVERHEAD_BYTES = 1 << 20  # a multipart form's fields and boundaries beside its file


@dataclass(frozen=True)
class Health:
    """What ``/healthz`` reports. ``serving``: listening and following its topics; ``saturated``: at
    MAX_SESSIONS (``gateway.admission`` decides)."""

    gateway_id: str
    serving: bool
    kafka_ok: bool
    saturated: bool
    clients: int
    max_sessions: int
    unstarted: int

    @property
    def status(self) -> str:
        """``ok``; ``degraded`` (not serving, or Kafka away); ``saturated`` (at MAX_SESSIONS): a load
        balancer sends new clients elsewhere unless ``ok``."""
        if not self.serving or not self.kafka_ok:
            return "degraded"
        return "saturated" if self.saturated else "ok"

    def body(self) -> dict[str, Any]:
        fields = asdict(self)
        kafka_ok, serving = fields.pop("kafka_ok"), fields.pop("serving")
        del fields["saturated"]  # said by the status
        return {"status": self.status, **fields, "kafka": "ok" if kafka_ok else "unreachable", "following": serving}


class GatewayHttp:
    def __init__(
        self,
        api: AudioApi,
        viewer_events: ViewerEvents,
        auth: Authenticator,
        health: Callable[[], Health],
        client_config: Callable[[], dict[str, Any]],
        translation_routes: dict[str, Any],
        *,
        metrics_auth: bool,
        max_upload_bytes: int,
    ) -> None:
        self.api = api
        self.viewer_events = viewer_events
        self.auth = auth
        self.health = health
        self.client_config = client_config
        self.translation_routes = translation_routes
        self.metrics_auth = metrics_auth
        self.max_upload_bytes = max_upload_bytes
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_upload_bytes + UPLOAD_OVERHEAD_BYTES)
        self.api.add_routes(app)
        self.viewer_events.add_routes(app)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/config.json", self._config)
        app.router.add_get("/languages", self._languages)
        static = resources.files("gateway").joinpath("static")
        if static.is_dir():

            async def page(_: web.Request) -> web.FileResponse:
                return web.FileResponse(str(static.joinpath("index.html")))

            async def watch_page(_: web.Request) -> web.FileResponse:
                return web.FileResponse(str(static.joinpath("watch.html")))

            app.router.add_get("/", page)
            app.router.add_get("/watch/{broadcast_id}", watch_page)
            app.router.add_static("/static/", str(static))
        return app

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None) -> int:
        """Serve; returns the port bound (``port`` 0: any free one)."""
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=tls)
        await site.start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        health = self.health()
        return web.json_response(health.body(), status=200 if health.status == "ok" else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.metrics_auth:
            try:
                self.auth.authenticate(request.headers.get("Authorization"), request.path_qs)
            except AuthError as e:
                return web.Response(status=e.status, text=e.message + "\n")
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _languages(self, _: web.Request) -> web.Response:
        """The languages, and for each spoken language the targets it can be translated into, with their
        route (a text model, ``whisper``: Whisper's English from the speech, or ``whisper+<model>``)."""
        return web.json_response({"languages": LANGUAGES, "routes": self.translation_routes})

    async def _config(self, _: web.Request) -> web.Response:
        return web.json_response(self.client_config())
