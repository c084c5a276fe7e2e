"""A gateway with API keys, JWTs, an Origin allow-list and TLS (certificate made here), as a client would
meet it: refused without credentials, real speech transcribed over wss:// with them."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from babelstream.client import StreamReport, stream_audio
from gateway.auth import new_api_key
from schemas.records import secret_digest
from tests.audio import encode_audio, librivox, wer
from tests.certs import self_signed
from tests.stack import Service, Stack
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.timeout(240)

JWT_SECRET = "test-secret-" * 4


class Secured:
    def __init__(self, svc: Service, tls: ssl.SSLContext, keys: dict[str, str]) -> None:
        self.svc, self.tls, self.keys = svc, tls, keys
        self.ws_url = f"wss://localhost:{svc.ws_port}"
        self.https = svc.base_url.replace("http://127.0.0.1", "https://localhost")

    def get(self, path: str, token: str | None = None) -> int:
        req = urllib.request.Request(self.https + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=5, context=self.tls) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except urllib.error.URLError:
            return 0  # not listening (yet)


@pytest.fixture(scope="module")
def secured(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(folder)
    keys = {"alice": new_api_key(), "solo": new_api_key()}
    (folder / "keys").write_text(f"alice:{secret_digest(keys['alice'])}\nsolo:{secret_digest(keys['solo'])}:1\n")
    svc = stack.start_gateway(
        API_KEYS_FILE=str(folder / "keys"),
        JWT_SECRET=JWT_SECRET,
        JWT_AUDIENCE="babelstream",
        ALLOWED_ORIGINS="https://app.example",
        METRICS_AUTH="true",
        MAX_REALTIME_FACTOR="100",  # sessions alone are hardly limited here: the key's limit is what is tried
        KEY_REALTIME_FACTOR="3",
        AUDIO_BURST_S="1",
        TLS_CERT_FILE=str(cert),
        TLS_KEY_FILE=str(key),
    )
    tls = ssl.create_default_context(cafile=str(cert))
    sec = Secured(svc, tls, keys)

    def healthy() -> bool:  # health stays open, over https
        assert svc.proc.poll() is None, svc.log()
        return sec.get("/healthz") == 200

    wait_until_sync(healthy, 120, svc.log)
    yield sec
    stack.retire(svc)


async def refused(sec: Secured, path: str = "/", **headers: str) -> int:
    with pytest.raises(InvalidStatus) as e:
        async with connect(sec.ws_url + path, ssl=sec.tls, additional_headers=headers):
            pass
    return e.value.response.status_code


async def ready_over(sec: Secured, path: str = "/", **headers: str) -> dict:
    async with connect(sec.ws_url + path, ssl=sec.tls, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "start"}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_no_or_wrong_credentials_are_refused_before_the_upgrade(secured: Secured) -> None:
    assert await refused(secured) == 401
    assert await refused(secured, Authorization=f"Bearer {new_api_key()}") == 401
    expired = jwt.encode({"sub": "x", "aud": "babelstream", "exp": int(time.time()) - 5}, JWT_SECRET)
    assert await refused(secured, Authorization=f"Bearer {expired}") == 401
    assert await refused(secured, f"/?token={secured.keys['alice']}", Origin="https://evil.example") == 403
    with pytest.raises(ssl.SSLError):  # TLS is real: a client that does not trust the certificate fails
        await connect(secured.ws_url, ssl=ssl.create_default_context())


async def test_keys_tokens_and_browsers_get_in(secured: Secured) -> None:
    key = secured.keys["alice"]
    assert (await ready_over(secured, Authorization=f"Bearer {key}"))["type"] == "ready"
    browser = await ready_over(secured, f"/?token={key}", Origin="https://app.example")
    assert browser["type"] == "ready"
    token = jwt.encode({"sub": "svc", "aud": "babelstream", "exp": int(time.time()) + 60}, JWT_SECRET)
    assert (await ready_over(secured, Authorization=f"Bearer {token}"))["type"] == "ready"
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    rep = await stream_audio(secured.ws_url, pcm, pace=0, source_lang="en", api_key=key, ssl=secured.tls)
    assert wer(ref, rep.text) < 0.2


async def test_a_session_resumes_only_under_the_key_or_subject_that_started_it(secured: Secured) -> None:
    alice = {"Authorization": f"Bearer {secured.keys['alice']}"}
    bob = {
        "Authorization": "Bearer "
        + jwt.encode({"sub": "bob", "aud": "babelstream", "exp": int(time.time()) + 60}, JWT_SECRET)
    }

    async def resume(headers: dict[str, str], sid: str, token: str) -> dict:
        async with connect(secured.ws_url, ssl=secured.tls, additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "start", "session_id": sid, "resume_token": token}))
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

    first = await ready_over(secured, **alice)
    sid, token = first["session_id"], first["resume_token"]
    refused = await resume(bob, sid, token)  # bob holds alice's token (it leaked): still not his session
    assert refused["code"] == "forbidden" and token not in json.dumps(refused)
    again = await resume(alice, sid, token)
    assert again["type"] == "ready" and again["resumed"] is True and again["resume_token"] != token
    stranger = await resume(bob, sid, "guessed")  # a wrong token: the same answer as a session that is not there
    missing = await resume(bob, "f" * 32, "guessed")
    assert stranger["code"] == missing["code"] == "unknown_session"
    assert stranger["message"].replace(sid, "ID") == missing["message"].replace("f" * 32, "ID")
    assert (await resume(alice, sid, token))["code"] == "unknown_session"  # the spent token opens nothing
    assert (await resume(alice, sid, again["resume_token"]))["type"] == "ready"


async def test_a_key_has_its_own_session_limit_and_metrics_need_credentials(secured: Secured) -> None:
    solo = secured.keys["solo"]
    async with connect(secured.ws_url, ssl=secured.tls, additional_headers={"Authorization": f"Bearer {solo}"}) as a:
        await a.send(json.dumps({"type": "start"}))
        assert json.loads(await a.recv())["type"] == "ready"
        second = await ready_over(secured, Authorization=f"Bearer {solo}")
        assert second["code"] == "too_many_sessions" and second["fatal"] is True
        assert (await ready_over(secured, Authorization=f"Bearer {secured.keys['alice']}"))["type"] == "ready"
    assert await asyncio.to_thread(secured.get, "/metrics") == 401
    assert await asyncio.to_thread(secured.get, "/metrics", secured.keys["alice"]) == 200


def test_listening_beyond_loopback_without_credentials_refuses_to_start(stack: Stack) -> None:
    env = stack.env(GATEWAY_HOST="0.0.0.0", GATEWAY_PORT="0", HEALTH_PORT="0")  # exits before it binds
    out = subprocess.run(
        [sys.executable, "-m", "babelstream.cli", "gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "authentication is required" in out.stdout + out.stderr


async def test_sessions_of_one_key_are_paced_together(secured: Secured) -> None:
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    key = secured.keys["alice"]

    def limited(rep: StreamReport) -> list[dict]:
        return [m for m in rep.of_type("error") if m["code"] == "rate_limited"]

    alone = await stream_audio(secured.ws_url, pcm, pace=2, source_lang="en", api_key=key, ssl=secured.tls)
    assert not limited(alone)  # 2x real time is within the key's 3x
    both = await asyncio.gather(
        *(stream_audio(secured.ws_url, pcm, pace=2, source_lang="en", api_key=key, ssl=secured.tls) for _ in "ab")
    )
    told = [m for rep in both for m in limited(rep)]
    assert told and all("all sessions of this key" in m["message"] for m in told)
    assert all(wer(ref, rep.text) < 0.2 for rep in both)  # paced, nothing dropped


def test_the_openai_api_takes_the_same_credentials_over_tls(secured: Secured) -> None:
    import httpx
    import openai

    def api(key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{secured.https}/v1", api_key=key, max_retries=0, http_client=httpx.Client(verify=secured.tls)
        )

    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    wav = encode_audio(pcm, 16000, "wav", "pcm_s16le")
    with pytest.raises(openai.AuthenticationError) as e:
        api(new_api_key()).audio.transcriptions.create(model="whisper-1", file=("a.wav", wav))
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        api(new_api_key()).models.list()
    token = jwt.encode({"sub": "svc", "aud": "babelstream", "exp": int(time.time()) + 60}, JWT_SECRET)
    for key in (secured.keys["alice"], token):
        text = api(key).audio.transcriptions.create(model="whisper-1", file=("a.wav", wav), response_format="text")
        assert wer(ref, text) < 0.2
