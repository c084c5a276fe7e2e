"""Broadcast viewers through the real gateway and Kafka: the transcript so far then live captions with no
gap and no duplicate at the seam, exact resume, WebSocket and Server-Sent Events alike, and every way a
viewer or its token can be wrong (results here are written straight to the results topic, as an STT
worker would; the real workers' captions are in ``test_broadcast_speech``)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import socket
import sys
from collections import Counter

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from babelstream.client import stream_audio
from core.settings import load_settings
from schemas.langs import LANGUAGES
from streams.deadletter import DeadLetters
from streams.reader import read_session_results
from streams.topics import Codecs, topic_specs
from tests.audio import librivox, silence, wer
from tests.stack import Stack, http_json, http_text, recv_type
from tests.viewing import (
    Broadcast,
    Results,
    Seen,
    final,
    read_until,
    sse_events,
    start_broadcast,
    translated,
    watch_ws,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


def live(seen: Seen) -> bool:
    return any(m["type"] == "live" for m in seen.messages)


def finals(n: int):  # type: ignore[no-untyped-def]
    return lambda seen: len(seen.of("final")) >= n


async def test_a_viewer_gets_the_transcript_so_far_then_live_captions_and_resumes_exactly(stack: Stack) -> None:
    async with connect(stack.ws_url) as sp, Results(stack) as results:
        b = await start_broadcast(sp, source_lang="es")
        await results.put(*[final(b.session_id, i) for i in range(3)])
        v, first = await watch_ws(stack.ws_url, b)
        assert first["type"] == "watching" and first["broadcast_id"] == b.broadcast_id and first["lang"] is None
        seen = await read_until(v, Seen(), live)
        assert seen.finals == [0, 1, 2] and seen.messages[-1]["type"] == "live"
        assert seen.of("final")[0]["text"] == "frase número 0" and seen.of("final")[0]["original_lang"] == "es"
        assert seen.messages[-1]["position"] == seen.last_position
        after = seen.last_position
        await results.put(final(b.session_id, 3), final(b.session_id, 4))
        await read_until(v, seen, finals(5))
        assert seen.finals == [0, 1, 2, 3, 4]
        await v.close()

        # a reconnect with the last position it has gets exactly what came after it
        again, _ = await watch_ws(stack.ws_url, b, after=after)
        resumed = await read_until(again, Seen(), live)
        assert resumed.finals == [3, 4]
        await again.close()

        # Server-Sent Events: the same messages, the position as the event id; Last-Event-ID resumes
        url = f"{stack.base_url}/v1/broadcasts/{b.broadcast_id}/events?token={b.viewer_token}"
        status, sse = await sse_events(url, Seen(), live)
        assert status == 200 and sse.finals == [0, 1, 2, 3, 4] and sse.messages[0]["type"] == "watching"
        status, sse = await sse_events(url, Seen(), live, headers={"Last-Event-ID": str(after)})
        assert status == 200 and sse.finals == [3, 4]


async def test_viewers_joining_while_finals_stream_in_miss_none_and_get_none_twice(stack: Stack) -> None:
    n = 40
    async with connect(stack.ws_url) as sp, Results(stack) as results:
        b = await start_broadcast(sp, public=True)
        assert b.viewer_token is None

        async def speak() -> None:
            for i in range(n):
                await results.put(final(b.session_id, i))
                await asyncio.sleep(random.uniform(0, 0.03))

        speaking = asyncio.create_task(speak())
        viewers = []
        for _ in range(4):  # joining at different moments of the stream, each its own seam
            await asyncio.sleep(0.2)
            ws, first = await watch_ws(stack.ws_url, b)
            assert first["type"] == "watching"
            viewers.append(ws)
        sse = asyncio.create_task(
            sse_events(f"{stack.base_url}/v1/broadcasts/{b.broadcast_id}/events", Seen(), finals(n), 60)
        )
        await speaking
        for ws in viewers:
            seen = await read_until(ws, Seen(), finals(n))
            assert seen.finals == list(range(n)), seen.finals
            positions = [m["position"] for m in seen.of("final")]
            assert positions == sorted(set(positions))
            await ws.close()
        status, got = await sse
        assert status == 200 and got.finals == list(range(n))


async def test_a_viewer_in_another_language_reads_the_translations_and_the_original_beside_them(stack: Stack) -> None:
    async with connect(stack.ws_url) as sp, Results(stack) as results:
        b = await start_broadcast(sp, source_lang="es")
        f0 = final(b.session_id, 0, "buenos días", targets=["pt"])
        f1 = final(b.session_id, 1, "hasta luego")  # spoken before anyone read Portuguese
        await results.put(f0, translated(f0, "pt", "bom dia"), f1)
        v, first = await watch_ws(stack.ws_url, b, lang="pt")
        assert first["lang"] == "pt" and first["source_lang"] == "es"
        seen = await read_until(v, Seen(), live)
        a, c = seen.of("final")
        assert (a["text"], a["lang"], a["original_text"], a["translation"]) == ("bom dia", "pt", "buenos días", "test")
        assert (c["text"], c["lang"], c["untranslated"]) == ("hasta luego", "es", "not_requested")
        # mid-stream it switches to the original: the transcript again, in it
        await v.send(json.dumps({"type": "set_lang", "lang": "es"}))
        await read_until(v, seen, lambda s: len(s.of("live")) >= 2)
        assert [m["text"] for m in seen.of("final")[2:]] == ["buenos días", "hasta luego"]
        await v.send(json.dumps({"type": "set_lang", "lang": "de"}))  # no route reaches it
        err = await recv_type(v, "error")
        assert err["code"] == "unsupported_language" and not err["fatal"] and "reachable" in err["message"]
        await v.close()
        # the speaker, who asked for no translation, is sent none of its viewers'
        await results.put(translated(f1, "pt", "até logo"))
        await sp.send(json.dumps({"type": "ping"}))
        while (msg := json.loads(await asyncio.wait_for(sp.recv(), 10)))["type"] != "pong":
            assert msg["type"] != "translation", msg


async def test_wrong_tokens_rotation_and_lying_viewers_are_refused_and_closed(stack: Stack) -> None:
    async with connect(stack.ws_url) as sp:
        b = await start_broadcast(sp)
        for fields in ({"viewer_token": "guess"}, {"viewer_token": None}):
            ws, err = await watch_ws(stack.ws_url, b, **fields)
            assert err["type"] == "error" and err["code"] == "unknown_broadcast" and err["fatal"], err
            await ws.wait_closed()
        status, body = await sse_events(
            f"{stack.base_url}/v1/broadcasts/{b.broadcast_id}/events?token=guess", Seen(), live
        )
        assert status == 404 and body.messages[0]["error"]["code"] == "unknown_broadcast"
        status, body = await sse_events(f"{stack.base_url}/v1/broadcasts/nope/events", Seen(), live)
        assert status == 404  # an unknown broadcast and a wrong token look alike
        for query, code in (("after=soon", "invalid_message"), ("lang=klingon", "unsupported_language")):
            url = f"{stack.base_url}/v1/broadcasts/{b.broadcast_id}/events?token={b.viewer_token}&{query}"
            status, body = await sse_events(url, Seen(), live)
            assert status == 400 and body.messages[0]["error"]["code"] == code, body.messages

        # a viewer that sends audio, or a speaker's message, or watches twice, is closed
        for frame in (b"\x00\x01" * 800, json.dumps({"type": "start"}), json.dumps({"type": "stop"})):
            ws, _ = await watch_ws(stack.ws_url, b)
            await read_until(ws, Seen(), live)
            await ws.send(frame)
            err = await recv_type_any(ws, "error")
            assert err["fatal"] and err["code"] in ("not_a_viewer_message",), err
            await ws.wait_closed()
        ws = await connect(f"{stack.ws_url}/watch")  # no watch first
        await ws.send(json.dumps({"type": "ping"}))
        err = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert err["code"] == "not_watching" and err["fatal"]
        await ws.wait_closed()

        # rotation lets go of the viewers holding the old token, and only the new one lets in
        old, _ = await watch_ws(stack.ws_url, b)
        await read_until(old, Seen(), live)
        await sp.send(json.dumps({"type": "rotate_viewer_token"}))
        new_token = (await recv_type(sp, "broadcast"))["viewer_token"]
        err = await recv_type_any(old, "error", 20)
        assert err["code"] == "viewer_token_rotated" and err["fatal"]
        await old.wait_closed()
        ws, err = await watch_ws(stack.ws_url, b)
        assert err["code"] == "unknown_broadcast"
        fresh, first = await watch_ws(stack.ws_url, b, viewer_token=new_token)
        assert first["type"] == "watching"
        await read_until(fresh, Seen(), live)

        # the speaker ends it: its viewers get ended; a later viewer gets the transcript, then ended
        await sp.send(json.dumps({"type": "end_broadcast"}))
        await recv_type(sp, "broadcast")
        assert (await recv_type_any(fresh, "ended", 20))["broadcast_id"] == b.broadcast_id
        await fresh.wait_closed()
        late, first = await watch_ws(stack.ws_url, b, viewer_token=new_token)
        assert first["ended"] is True
        seen = await read_until(late, Seen(), lambda s: any(m["type"] == "ended" for m in s.messages))
        assert [m["type"] for m in seen.messages][-2:] == ["live", "ended"]
        await late.wait_closed()
        await sp.send(json.dumps({"type": "ping"}))  # the speaker's session goes on undisturbed
        await recv_type(sp, "pong")


async def recv_type_any(ws, kind: str, timeout_s: float = 15.0) -> dict:  # type: ignore[no-untyped-def]
    """The next message of type ``kind``, fatal errors included (a refusal is what is awaited)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                msg = json.loads(await ws.recv())
            except ConnectionClosed:
                raise AssertionError(f"closed before any {kind}") from None
            if msg["type"] == kind:
                return msg


async def test_a_poison_record_mid_broadcast_costs_no_caption(stack: Stack) -> None:
    async with connect(stack.ws_url) as sp, Results(stack) as results:
        b = await start_broadcast(sp, public=True)
        v, _ = await watch_ws(stack.ws_url, b)
        seen = await read_until(v, Seen(), live)
        await results.put(final(b.session_id, 0))
        await results.raw(b.session_id, b"\x00\x00\x00\x00\x6b" + b"\xff" * 9)  # a known id, a corrupt body
        await results.raw(b.session_id, None)
        await results.put(final(b.session_id, 1))
        await read_until(v, seen, finals(2))
        late, _ = await watch_ws(stack.ws_url, b)  # the load from the log skips it too
        assert (await read_until(late, Seen(), live)).finals == [0, 1]
        assert seen.finals == [0, 1]


async def test_viewers_of_a_killed_gateway_reconnect_elsewhere_and_miss_nothing(stack: Stack) -> None:
    other = stack.start_gateway()
    try:
        await asyncio.to_thread(stack.wait_healthy, [other])
        async with connect(stack.ws_url) as sp, Results(stack) as results:
            b = await start_broadcast(sp, public=True)
            await results.put(*[final(b.session_id, i) for i in range(3)])
            v, _ = await watch_ws(other.ws_url, b)
            seen = await read_until(v, Seen(), live)
            other.kill()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(v.recv(), 10)
            await results.put(*[final(b.session_id, i) for i in range(3, 6)])  # while it reconnects
            again, _ = await watch_ws(stack.ws_url, b, after=seen.last_position)
            rest = await read_until(again, Seen(), finals(3))
            assert seen.finals + rest.finals == list(range(6))
    finally:
        stack.retire(other)


async def test_a_viewer_flood_is_limited_and_never_disturbs_the_speaker(stack: Stack) -> None:
    """2,000 viewer connections against MAX_VIEWERS=500 while the speaker streams speech: the broadcast's
    MAX_VIEWERS_PER_BROADCAST get in, the rest are refused with a reason, the speaker's captions come as
    ever, and a new session still starts; a viewer trying every language gets none past MAX_BROADCAST_LANGS."""
    limited = stack.start_gateway(MAX_VIEWERS="500", MAX_VIEWERS_PER_BROADCAST="450", MAX_BROADCAST_LANGS="1")
    try:
        await asyncio.to_thread(stack.wait_healthy, [limited])
        clips = [librivox(f"sense_and_sensibility_01_austen_64kb-{c}") for c in ("0870", "0880", "0920")]
        pcm = b"".join(clip + silence(1500) for clip, _, _ in clips)  # about 25 s of speech, at real time
        ref = " ".join(r for _, _, r in clips)
        ready: asyncio.Future[dict] = asyncio.get_running_loop().create_future()  # type: ignore[type-arg]

        def on_message(msg: dict) -> None:  # type: ignore[type-arg]
            if msg["type"] == "ready" and not ready.done():
                ready.set_result(msg)

        speaking = asyncio.create_task(
            stream_audio(
                limited.ws_url, pcm, pace=1.0, broadcast=True, public=True, on_message=on_message, timeout_s=180
            )
        )
        b = Broadcast(
            None, (r := await asyncio.wait_for(ready, 30))["session_id"], r["broadcast"]["broadcast_id"], None, ""
        )  # type: ignore[arg-type]
        # alone, a viewer bursts through every language there is (99): one reachable one is let in, no more
        greedy, _ = await watch_ws(limited.ws_url, b)
        await read_until(greedy, Seen(), live)
        for code in LANGUAGES:
            await greedy.send(json.dumps({"type": "set_lang", "lang": code}))
        await greedy.send(json.dumps({"type": "ping"}))
        said = await read_until(greedy, Seen(), lambda s: bool(s.of("pong")), 60)
        refused = Counter(m["code"] for m in said.of("error"))
        assert [m["lang"] for m in said.of("watching")] == ["en"], said.of("watching")
        unreachable = len(LANGUAGES) - 2  # all but English and Portuguese
        assert refused == Counter({"unsupported_language": unreachable, "too_many_languages": 1}), refused
        one, _ = await watch_ws(limited.ws_url, b, lang="en")
        await read_until(one, Seen(), live)
        _, err = await watch_ws(limited.ws_url, b, lang="pt")  # a second language past MAX_BROADCAST_LANGS
        assert err["code"] == "too_many_languages" and "en" in err["message"], err
        _, err = await watch_ws(limited.ws_url, b, lang="de")  # no route reaches it
        assert err["code"] == "unsupported_language" and "reachable" in err["message"], err
        status, info = await asyncio.to_thread(http_json, f"{limited.base_url}/v1/broadcasts/{b.broadcast_id}")
        assert status == 200 and len(info["langs"]) <= 1, info

        async def viewer() -> str:
            try:
                ws, first = await watch_ws(limited.ws_url, b)
            except (ConnectionClosed, OSError, TimeoutError) as e:
                return f"closed {type(e).__name__}"
            viewers.append(ws)
            return first["type"] if first["type"] != "error" else first["code"]

        viewers: list = []
        got = Counter(await asyncio.gather(*[viewer() for _ in range(2000)]))
        assert got["watching"] == 448, got  # the broadcast's 450, with the first two
        assert got["broadcast_full"] + got["too_many_viewers"] == 1552, got
        async with connect(limited.ws_url) as sp2:  # a new speaker is not locked out by the viewers
            await sp2.send(json.dumps({"type": "start"}))
            assert (await recv_type(sp2, "ready"))["session_id"]
        rep = await speaking
        assert wer(ref, rep.text) < 0.2, rep.text
        for ws in viewers:
            await ws.close()
    finally:
        stack.retire(limited)


def silent_viewer(port: int, broadcast_id: str) -> socket.socket:
    """A viewer that sends watch, then never reads a byte (a raw socket with a small window: the
    gateway's writes to it back up at once)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /watch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    payload = json.dumps({"type": "watch", "broadcast_id": broadcast_id}).encode()
    mask = os.urandom(4)
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
    return sock


async def test_a_viewer_that_does_not_read_is_dropped_and_slows_no_one(stack: Stack) -> None:
    small = stack.start_gateway(VIEWER_QUEUE_MAX="8")
    try:
        await asyncio.to_thread(stack.wait_healthy, [small])
        async with connect(small.ws_url) as sp, Results(stack) as results:
            b = await start_broadcast(sp, public=True)
            slow = await asyncio.to_thread(silent_viewer, small.ws_port, b.broadcast_id)
            reader, _ = await watch_ws(small.ws_url, b)
            seen = await read_until(reader, Seen(), live)
            n, text = 300, "palabra " * 5000  # 80 kB a caption (text and original): 24 MB, past every buffer
            await results.put(*[final(b.session_id, i, f"{i} {text}") for i in range(n)])
            await read_until(reader, seen, finals(n), 120)
            assert seen.finals == list(range(n))

            async def dropped() -> bool:
                metrics = await asyncio.to_thread(http_text, f"{small.base_url}/metrics")
                return 'babelstream_gateway_viewers_dropped_total{reason="slow"} 1.0' in metrics

            await wait_until(dropped, 30, "the viewer that does not read was never dropped")
            slow.close()
    finally:
        stack.retire(small)


async def test_a_language_first_asked_for_mid_broadcast_is_back_filled_once_from_the_log(stack: Stack) -> None:
    """English finals spoken before anyone read Portuguese: the first Portuguese viewer gets them as the
    original, then their translations, made by the translation worker from the log; a viewer on another
    gateway reads those from the log (no second translation); a final made without Portuguese afterwards
    (in flight while the speaker's gateway heard of the language) is back-filled too."""
    other = stack.start_gateway()
    texts = ["good morning everyone", "thank you for coming", "let us begin", "the first question is simple"]
    try:
        await asyncio.to_thread(stack.wait_healthy, [other])
        async with connect(stack.ws_url) as sp, Results(stack) as results:
            b = await start_broadcast(sp, public=True)
            await results.put(*[final(b.session_id, i, texts[i], lang="en") for i in range(3)])
            v, _ = await watch_ws(stack.ws_url, b, lang="pt")
            seen = await read_until(v, Seen(), live)
            assert [m["untranslated"] for m in seen.of("final")] == ["not_requested"] * 3
            await read_until(v, seen, finals(6), 120)
            filled = seen.of("final")[3:]
            assert sorted(m["utterance_index"] for m in filled) == [0, 1, 2]
            assert all(m["lang"] == "pt" and m["translation"] and m["untranslated"] is None for m in filled), filled
            assert all(m["text"] != m["original_text"] for m in filled)

            late, _ = await watch_ws(other.ws_url, b, lang="pt")  # another gateway: from the log
            backlog = await read_until(late, Seen(), live)
            assert sorted(backlog.finals) == [0, 1, 2] and all(m["lang"] == "pt" for m in backlog.of("final"))

            await results.put(final(b.session_id, 3, texts[3], lang="en"))  # made without Portuguese
            await read_until(v, seen, finals(8), 120)
            assert [m["untranslated"] for m in seen.of("final")[6:]] == ["not_requested", None]
            stored = await stack_results(stack, b.session_id)
            per = Counter(r.utterance_index for r in stored if r.kind.value == "TRANSLATION")
            assert per == Counter({0: 1, 1: 1, 2: 1, 3: 1}), per
    finally:
        stack.retire(other)


async def stack_results(stack: Stack, session_id: str) -> list:  # type: ignore[type-arg]
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
    topics = topic_specs(s)
    return await read_session_results(
        stack.bootstrap, topics.results.name, Codecs.create(s, topics), session_id, DeadLetters("test", None)
    )


async def test_the_command_line_watches_a_broadcast_until_it_ends(stack: Stack) -> None:
    async with connect(stack.ws_url) as sp, Results(stack) as results:
        b = await start_broadcast(sp, source_lang="es")
        await results.put(final(b.session_id, 0, "hola a todos"), final(b.session_id, 1, "empezamos"))
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "babelstream.cli",
            "watch",
            b.broadcast_id,
            "--token",
            b.viewer_token or "",
            "--url",
            stack.ws_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert cli.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(60):
            while not any("live" in line for line in lines):
                lines.append((await cli.stdout.readline()).decode())
            await results.put(final(b.session_id, 2, "primera pregunta"))
            while not any("primera pregunta" in line for line in lines):
                lines.append((await cli.stdout.readline()).decode())
            await sp.send(json.dumps({"type": "end_broadcast"}))
            rest, _ = await cli.communicate()
        out = "".join(lines) + rest.decode()
        assert cli.returncode == 0, out
        assert out.index("hola a todos") < out.index("empezamos") < out.index("live") < out.index("primera pregunta")
        assert "the broadcast has ended" in out
