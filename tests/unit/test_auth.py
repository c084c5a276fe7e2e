"""Access rules, sans I/O: API keys kept as digests, JWTs (HS256 and RS256), the browser Origin check."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth import ANONYMOUS, Authenticator, AuthError, new_api_key, origin_allowed, parse_key_lines
from schemas.records import secret_digest


def keyed(**kw: object) -> tuple[Authenticator, str]:
    key = new_api_key()
    auth = Authenticator.create(
        mode="auto", listens_beyond_loopback=False, api_keys=f"alice:{secret_digest(key)}:2", **kw
    )
    return auth, key


def test_keys_are_matched_by_digest_from_header_or_query() -> None:
    auth, key = keyed()
    assert auth.required  # keys configured: required even on loopback
    who = auth.authenticate(f"Bearer {key}", "/")
    assert (who.name, who.max_sessions) == ("alice", 2)
    assert auth.authenticate(None, f"/?token={key}").name == "alice"
    for header, path in ((None, "/"), ("Bearer nope", "/"), ("Basic abc", "/"), (None, "/?token=" + key[:-1])):
        with pytest.raises(AuthError) as e:
            auth.authenticate(header, path)
        assert e.value.status == 401


def test_key_files_hold_digests_only(tmp_path: Path) -> None:
    key = new_api_key()
    f = tmp_path / "keys"
    f.write_text(f"# operators\nbob:{secret_digest(key)}\n\n")
    auth = Authenticator.create(mode="required", listens_beyond_loopback=False, api_keys_file=f)
    assert auth.authenticate(f"Bearer {key}", "/").name == "bob" and key not in f.read_text()
    with pytest.raises(ValueError, match="name:sha256hex"):
        parse_key_lines(f"carol:{key}")  # a plain key where a digest belongs is refused, not accepted


def test_required_with_nothing_to_check_is_a_startup_error_and_loopback_defaults_open() -> None:
    with pytest.raises(ValueError, match="babelstream keys new"):
        Authenticator.create(mode="auto", listens_beyond_loopback=True)
    with pytest.raises(ValueError):
        Authenticator.create(mode="required", listens_beyond_loopback=False)
    open_local = Authenticator.create(mode="auto", listens_beyond_loopback=False)
    assert not open_local.required and open_local.authenticate(None, "/") is ANONYMOUS
    assert not Authenticator.create(mode="off", listens_beyond_loopback=True).required


def test_hs256_tokens_with_audience_issuer_and_expiry() -> None:
    auth = Authenticator.create(
        mode="auto", listens_beyond_loopback=True, jwt_secret="s3cret" * 6, jwt_audience="babel", jwt_issuer="idp"
    )
    claims = {"sub": "dana", "aud": "babel", "iss": "idp", "exp": int(time.time()) + 60, "max_sessions": 3}
    who = auth.authenticate("Bearer " + jwt.encode(claims, "s3cret" * 6, algorithm="HS256"), "/")
    assert (who.name, who.max_sessions) == ("dana", 3)
    bad = [
        claims | {"exp": int(time.time()) - 10},
        claims | {"aud": "other"},
        claims | {"iss": "evil"},
        {k: v for k, v in claims.items() if k != "exp"},
    ]
    for c in bad:
        with pytest.raises(AuthError, match="invalid token"):
            auth.authenticate("Bearer " + jwt.encode(c, "s3cret" * 6, algorithm="HS256"), "/")
    with pytest.raises(AuthError):  # signed with another secret
        auth.authenticate("Bearer " + jwt.encode(claims, "x" * 36, algorithm="HS256"), "/")


def test_rs256_tokens_and_no_algorithm_confusion(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "pub.pem").write_bytes(pem)
    auth = Authenticator.create(mode="auto", listens_beyond_loopback=True, jwt_public_key_file=tmp_path / "pub.pem")
    claims = {"sub": "erin", "exp": int(time.time()) + 60}
    assert auth.authenticate("Bearer " + jwt.encode(claims, private, algorithm="RS256"), "/").name == "erin"
    with pytest.raises(AuthError):  # the public key used as an HS256 secret must not verify
        auth.authenticate("Bearer " + jwt.encode(claims, "not-the-key" * 4, algorithm="HS256"), "/")


OWN = frozenset({"captions.example.org"})  # PUBLIC_HOSTS


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, frozenset(), True),  # not a browser
        ("http://localhost:8080", frozenset(), True),  # the page the gateway serves, on loopback
        ("http://127.0.0.1:8080", frozenset(), True),
        ("http://[::1]:8080", frozenset(), True),
        ("https://captions.example.org", frozenset(), True),  # a published name
        ("https://evil.example", frozenset(), False),
        # DNS rebinding: evil resolves to 127.0.0.1, so the browser sends Host: evil and Origin: http://evil
        ("http://evil:5026", frozenset(), False),
        ("http://localhost.evil.example", frozenset(), False),
        ("https://app.example", frozenset({"https://app.example"}), True),
        ("https://app.example.evil", frozenset({"https://app.example"}), False),
        ("http://localhost:8080", frozenset({"https://app.example"}), False),  # an allow-list is all there is
        ("https://anything", frozenset({"*"}), True),
        ("http://[", frozenset(), False),  # unparseable: refused, not a server error
    ],
)
def test_origin_allow_list(origin: str | None, allowed: frozenset[str], ok: bool) -> None:
    assert origin_allowed(origin, allowed, OWN) is ok
