"""Who may use the gateway, sans I/O: API keys (stored only as SHA-256 digests), JWTs (HS256 or RS256,
checked with PyJWT against audience and issuer) and the browser Origin allow-list.

A client presents its credential as ``Authorization: Bearer <key or JWT>`` or, where it cannot set
headers (a browser's WebSocket), as a ``token`` query parameter. Keys are listed as ``name:sha256hex`` or
``name:sha256hex:max_sessions`` lines, in ``API_KEYS_FILE`` or, comma-separated, in ``API_KEYS``;
``babelstream keys new NAME`` makes one. A JWT may carry a ``max_sessions`` claim.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt

from core.settings import Settings
from schemas.errors import BabelstreamError
from schemas.records import secret_digest

KEY_PREFIX = "bsk_"


class AuthError(BabelstreamError):
    """The request is refused: ``status`` 401 (no or bad credential) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Whoever a credential stands for: a key's name or a JWT's subject."""

    name: str
    max_sessions: int | None = None  # concurrent sessions; None: the gateway's MAX_SESSIONS_PER_KEY


ANONYMOUS = Principal("anonymous")


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_key_lines(text: str) -> dict[str, Principal]:
    """``name:sha256hex[:max_sessions]`` entries (lines or commas; ``#`` comments) by digest."""
    out: dict[str, Principal] = {}
    for raw in text.replace(",", "\n").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(":")
        if len(parts) not in (2, 3) or len(parts[1]) != 64 or not all(c in "0123456789abcdef" for c in parts[1]):
            raise ValueError(f"API key entry {line[:40]!r}: expected name:sha256hex[:max_sessions] (lower-case hex)")
        limit = int(parts[2]) if len(parts) == 3 else None
        out[parts[1]] = Principal(parts[0], limit)
    return out


@dataclass(frozen=True)
class JwtPolicy:
    key: str  # HS256 secret or RS256 public key (PEM)
    algorithm: str  # "HS256" or "RS256"
    audience: str | None = None
    issuer: str | None = None

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError as e:
            raise AuthError(401, f"invalid token: {e}") from None
        limit = claims.get("max_sessions")
        return Principal(str(claims["sub"]), int(limit) if isinstance(limit, int) else None)


class Authenticator:
    def __init__(self, keys: dict[str, Principal], jwt_policy: JwtPolicy | None, required: bool) -> None:
        self.keys = keys
        self.jwt = jwt_policy
        self.required = required

    @classmethod
    def create(
        cls,
        *,
        mode: str,
        listens_beyond_loopback: bool,
        api_keys: str = "",
        api_keys_file: Path | None = None,
        jwt_secret: str | None = None,
        jwt_public_key_file: Path | None = None,
        jwt_audience: str | None = None,
        jwt_issuer: str | None = None,
    ) -> Authenticator:
        """``mode``: ``required``, ``off``, or ``auto`` (required when listening beyond loopback or when any
        key or JWT setting is given). Required with nothing to check against is a configuration error."""
        keys = parse_key_lines(api_keys)
        if api_keys_file is not None:
            keys |= parse_key_lines(api_keys_file.read_text())
        policy = None
        if jwt_secret and jwt_public_key_file:
            raise ValueError("set JWT_SECRET (HS256) or JWT_PUBLIC_KEY_FILE (RS256), not both")
        if jwt_secret:
            policy = JwtPolicy(jwt_secret, "HS256", jwt_audience, jwt_issuer)
        elif jwt_public_key_file is not None:
            policy = JwtPolicy(jwt_public_key_file.read_text(), "RS256", jwt_audience, jwt_issuer)
        configured = bool(keys) or policy is not None
        required = mode == "required" or (mode == "auto" and (listens_beyond_loopback or configured))
        if required and not configured:
            raise ValueError(
                "authentication is required (the gateway listens beyond loopback, or AUTH=required) but no"
                " API_KEYS, API_KEYS_FILE, JWT_SECRET or JWT_PUBLIC_KEY_FILE is set; make a key with"
                " `babelstream keys new NAME`, or set AUTH=off to accept anyone"
            )
        return cls(keys, policy, required)

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        return cls.create(
            mode=settings.auth,
            listens_beyond_loopback=not settings.gateway_on_loopback,
            api_keys=settings.api_keys,
            api_keys_file=settings.api_keys_file,
            jwt_secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            jwt_public_key_file=settings.jwt_public_key_file,
            jwt_audience=settings.jwt_audience,
            jwt_issuer=settings.jwt_issuer,
        )

    def authenticate(self, authorization: str | None, path: str) -> Principal:
        """The principal of a request's ``Authorization`` header or ``token`` query parameter."""
        token = bearer_token(authorization, path)
        if token is None:
            if self.required:
                raise AuthError(401, "credentials required: send 'Authorization: Bearer <key>' or ?token=<key>")
            return ANONYMOUS
        digest = secret_digest(token)
        for known, principal in self.keys.items():  # constant time per entry, whichever matches
            if hmac.compare_digest(known, digest):
                return principal
        if self.jwt is not None and token.count(".") == 2:
            return self.jwt.verify(token)
        raise AuthError(401, "unknown API key or token")


def bearer_token(authorization: str | None, path: str) -> str | None:
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError(401, "the Authorization header must be 'Bearer <key or token>'")
        return value.strip()
    tokens = parse_qs(urlsplit(path).query).get("token")
    return tokens[0] if tokens else None


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_name(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.endswith(".localhost") or host.startswith("127.")


def origin_allowed(origin: str | None, allowed: frozenset[str], own_hosts: frozenset[str]) -> bool:
    """Browsers send ``Origin``; other clients do not and pass. With no allow-list only pages served from
    a loopback name or one of ``own_hosts`` (the names the gateway is published under) may connect; the
    request's own ``Host`` is not trusted, since a DNS-rebinding page controls it. ``*`` allows any."""
    if origin is None or "*" in allowed:
        return True
    if allowed:
        return origin.rstrip("/") in allowed
    try:
        origin_host = urlsplit(origin).hostname
    except ValueError:  # not a URL at all ("http://[")
        return False
    return origin_host is not None and (is_loopback_name(origin_host) or origin_host in own_hosts)
