"""Broadcast viewers through the real gateway and Kafka: the transcript so far then live captions with no
gap and no duplicate at the seam, exact resume, WebSocket and Server-Sent Events alike, and every way a
viewer or its token can be wrong (results here are written straight to the results topic, as an STT
worker would; the real workers' captions are in ``test_broadcast_speech``)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.stack import Stack, recv_type
from tests.viewing import Results, Seen, final, read_until, sse_events, start_broadcast, translated, watch_ws

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


async def test_a_viewer_flood_is_limited_and_never_locks_the_speaker_out(stack: Stack) -> None:
    limited = stack.start_gateway(MAX_VIEWERS="40", MAX_VIEWERS_PER_BROADCAST="30", MAX_BROADCAST_LANGS="1")
    try:
        await asyncio.to_thread(stack.wait_healthy, [limited])
        async with connect(limited.ws_url) as sp:
            b = await start_broadcast(sp, public=True)
            one, _ = await watch_ws(limited.ws_url, b, lang="en")
            await read_until(one, Seen(), live)
            _, err = await watch_ws(limited.ws_url, b, lang="pt")  # a second language past MAX_BROADCAST_LANGS
            assert err["code"] == "too_many_languages" and "en" in err["message"], err
            _, err = await watch_ws(limited.ws_url, b, lang="de")  # no route reaches it
            assert err["code"] == "unsupported_language" and "reachable" in err["message"], err

            async def viewer() -> str:
                try:
                    ws, first = await watch_ws(limited.ws_url, b)
                except (ConnectionClosed, OSError, TimeoutError) as e:
                    return f"closed {type(e).__name__} {e}"[:60]
                viewers.append(ws)
                return first["type"] if first["type"] != "error" else first["code"]

            viewers: list = []
            got = await asyncio.gather(*[viewer() for _ in range(200)])
            counts = Counter(got)
            assert counts["watching"] == 29, counts  # the broadcast's 30, with the first one
            assert counts["broadcast_full"] + counts["too_many_viewers"] == 171, counts
            # the speaker's session, and a new one, go on while they are all connected
            async with connect(limited.ws_url) as sp2:
                await sp2.send(json.dumps({"type": "start"}))
                assert (await recv_type(sp2, "ready"))["session_id"]
            await sp.send(json.dumps({"type": "ping"}))
            await recv_type(sp, "pong")
            for ws in viewers:
                await ws.close()
    finally:
        stack.retire(limited)
