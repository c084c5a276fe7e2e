"""Before a WebSocket upgrade: one of each identifying header, an allowed Origin, a valid credential.

A browser's Origin must be on loopback, in ``PUBLIC_HOSTS`` or in ``ALLOWED_ORIGINS`` (a page that
rebinds its own name to this host cannot pass as it: ``gateway.auth.origin_allowed``); duplicate
``Host``, ``Origin`` or ``Authorization`` headers are a 400. Viewers (the ``/watch`` path) need no
credential. The principal a credential stands for is
kept for the connection's handler (:meth:`Handshake.principal_of`), never set on the connection itself.
"""

from __future__ import annotations

import ssl
from http import HTTPStatus
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from core.settings import Settings
from gateway import metrics as m
from gateway.auth import ANONYMOUS, Authenticator, AuthError, Principal, origin_allowed

SINGLE_HEADERS = ("Host", "Origin", "Authorization")
WATCH_PATH = "/watch"  # broadcast viewers (``gateway.watch``)


class Handshake:
    def __init__(self, auth: Authenticator, allowed_origins: str, public_hosts: str, gateway_host: str) -> None:
        """The settings' comma-separated ``ALLOWED_ORIGINS`` and ``PUBLIC_HOSTS``, and ``GATEWAY_HOST``
        (a host of its own unless it listens on every address)."""
        self.auth = auth
        self.origins = frozenset(o.strip().rstrip("/") for o in allowed_origins.split(",") if o.strip())
        self.own_hosts = frozenset(h.strip().lower() for h in public_hosts.split(",") if h.strip()) | (
            frozenset() if gateway_host in ("0.0.0.0", "::", "") else {gateway_host.lower()}
        )
        self._principals: WeakKeyDictionary[ServerConnection, Principal] = WeakKeyDictionary()

    def check(self, connection: ServerConnection, request: Request) -> Response | None:
        """websockets' ``process_request``: None lets the upgrade go on; a response refuses it."""
        for name in SINGLE_HEADERS:
            if len(request.headers.get_all(name)) > 1:
                m.AUTH_FAILURES.labels("400").inc()
                return connection.respond(HTTPStatus.BAD_REQUEST, f"more than one {name} header\n")
        if not origin_allowed(request.headers.get("Origin"), self.origins, self.own_hosts):
            m.AUTH_FAILURES.labels("origin").inc()
            return connection.respond(
                HTTPStatus.FORBIDDEN, "this Origin is neither on loopback nor in PUBLIC_HOSTS or ALLOWED_ORIGINS\n"
            )
        if urlsplit(request.path).path == WATCH_PATH:
            return None  # viewers need no credential: the viewer token they send is the broadcast's own
        try:
            self._principals[connection] = self.auth.authenticate(request.headers.get("Authorization"), request.path)
        except AuthError as e:
            m.AUTH_FAILURES.labels(str(e.status)).inc()
            return connection.respond(HTTPStatus(e.status), e.message + "\n")
        return None

    def principal_of(self, connection: ServerConnection) -> Principal:
        """Whom the connection's credential stands for (handed over once)."""
        return self._principals.pop(connection, ANONYMOUS)


def server_tls(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of both ports (WebSocket and HTTP), when TLS_CERT_FILE and TLS_KEY_FILE are set."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context
