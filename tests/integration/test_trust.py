"""Trust, tried as a hostile or unlucky client would (real broker, real gateways, real Whisper base):
reconnects at the worst moment lose and splice nothing, a session id alone takes nothing over, and
clients that never start, or send audio far too fast, do not lock out or slow down others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from babelstream.client import stream_audio
from core.settings import load_settings
from schemas.records import AudioEvent, AudioEventKind
from streams.broker import LocalKafka
from streams.deadletter import DeadLetters
from streams.reader import read_range, topic_partitions
from streams.topics import Codecs, topic_specs
from tests.audio import librivox, normalize, silence, wer
from tests.stack import Service, Stack, http_json, http_text, recv_type
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

CLIP_A, CLIP_B = "sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930"
FRAME = 3200  # 100 ms at 16 kHz PCM16


async def begin(url: str, **start: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url)
    await ws.send(json.dumps({"type": "start", **start}))
    return ws, await recv_type(ws, "ready")


async def speak_unfinished(ws: ClientConnection, pcm: bytes) -> None:
    """Send speech with no silence after it (the utterance stays open), then wait until the gateway has
    processed every frame (messages are handled in order: the pong comes after the last frame)."""
    for off in range(0, len(pcm), FRAME):
        await ws.send(pcm[off : off + FRAME])
    await ws.send(json.dumps({"type": "ping"}))
    await recv_type(ws, "pong")


async def resume_and_speak(
    url: str, sid: str, token: str, pcm: bytes, want_segments: set[int], timeout_s: float = 150
) -> list[dict[str, Any]]:
    """Resume, speak a whole utterance, stop, and collect messages until a final of every wanted segment."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s), connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "session_id": sid, "resume_token": token, "received_up_to": -1}))
        ready = await recv_type(ws, "ready")
        assert ready["resumed"] is True
        for off in range(0, len(pcm), FRAME):
            await ws.send(pcm[off : off + FRAME])
        await ws.send(json.dumps({"type": "stop"}))
        while not want_segments <= {m["utterance_index"] for m in messages if m["type"] == "final"}:
            messages.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"type": "ping"}))  # whatever was queued behind the finals comes before this
        while (msg := json.loads(await ws.recv()))["type"] != "pong":
            messages.append(msg)
    return messages


def exactly_one_final_each(messages: list[dict[str, Any]]) -> dict[int, str]:
    finals = [m for m in messages if m["type"] == "final"]
    ids = [m["utterance_index"] for m in finals]
    assert len(ids) == len(set(ids)), f"a final was delivered twice: {ids}"
    return {m["utterance_index"]: m["text"] for m in finals}


async def test_reconnect_while_the_old_socket_is_open_loses_and_splices_nothing(stack: Stack) -> None:
    old_pcm, _, old_ref = librivox(CLIP_A)
    new_pcm, _, new_ref = librivox(CLIP_B)
    old, ready = await begin(stack.ws_url, source_lang="en")
    try:
        await speak_unfinished(old, silence(300) + old_pcm)
        resumed = asyncio.create_task(
            resume_and_speak(stack.ws_url, ready["session_id"], ready["resume_token"], new_pcm + silence(1500), {0, 1})
        )
        taken = await recv_type(old, "error")
        assert taken["code"] == "session_taken_over" and taken["fatal"] is True
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(old.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        texts = exactly_one_final_each(await resumed)
    finally:
        await old.close()
    assert set(texts) == {0, 1}  # the old connection's utterance and the new one's, each whole, each once
    assert wer(old_ref, texts[0]) < 0.2, texts
    assert wer(new_ref, texts[1]) < 0.2, texts


async def stored_chunks(stack: Stack, session_id: str) -> list[AudioEvent]:
    """The session's audio chunks stored in Kafka."""
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix, audio_partitions=4)
    topics = topic_specs(s)
    codecs, dead_letters = Codecs.create(s, topics), DeadLetters("test", None)
    chunks = []
    async for rec in read_range(
        stack.bootstrap, await topic_partitions(stack.bootstrap, topics.audio.name, session_id)
    ):
        if rec.key == session_id.encode() and (ev := await dead_letters.decode(codecs.audio, rec)) is not None:
            chunks += [ev] if ev.kind is AudioEventKind.CHUNK else []
    return chunks


async def health_of(gw: Service, status: int) -> tuple[int, dict] | None:
    """The gateway's health reply when its status is ``status``, else None (for :func:`wait_until`)."""
    reply = await asyncio.to_thread(http_json, gw.health_url)
    return reply if reply[0] == status else None


async def audio_ms_stored(stack: Stack, session_id: str) -> int:
    return sum(ev.duration_ms for ev in await stored_chunks(stack, session_id))


async def audio_end_stored(stack: Stack, session_id: str) -> int:
    """Where the session's audio stored in Kafka ends (ms of session audio)."""
    return max((ev.audio_offset_ms + ev.duration_ms for ev in await stored_chunks(stack, session_id)), default=0)


@pytest.fixture
def doomed_gateway(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Service]:
    gw = stack.start_gateway(**getattr(request, "param", {}))
    stack.wait_healthy([gw])
    yield gw
    if gw in stack.services:
        stack.retire(gw)


async def test_gateway_killed_mid_utterance_then_resumed_elsewhere_delivers_every_utterance_once(
    stack: Stack, doomed_gateway: Service
) -> None:
    old_pcm, _, old_ref = librivox(CLIP_A)
    new_pcm, _, new_ref = librivox(CLIP_B)
    ws, ready = await begin(doomed_gateway.ws_url, source_lang="en")
    sid = ready["session_id"]
    try:
        await speak_unfinished(ws, silence(300) + old_pcm)
        speech_ms = len(old_pcm) // 32

        async def stored() -> bool:  # what the gateway produced is stored before it dies
            return await audio_ms_stored(stack, sid) >= speech_ms - 600

        await wait_until(stored, 30, "the gateway's audio was never stored", every_s=0.2)
        await asyncio.to_thread(doomed_gateway.kill)  # SIGKILL: no END, no state saved on the way out
        stack.services.remove(doomed_gateway)
    finally:
        await ws.close()
    # the speaker paused (longer than the silence that ends an utterance) before speaking again
    resumed = silence(1000) + new_pcm + silence(1500)
    messages = await resume_and_speak(stack.ws_url, sid, ready["resume_token"], resumed, {0, 1})
    texts = exactly_one_final_each(messages)
    assert set(texts) == {0, 1}, messages  # the new connection never reuses the dead one's utterance index
    assert wer(old_ref, texts[0]) < 0.25, texts  # all that reached Kafka, closed by the takeover
    assert wer(new_ref, texts[1]) < 0.2, texts  # nothing of the old utterance glued onto the new one


SEAM_CLIP, SEAM_WORD, SEAM_CUT_MS = "sense_and_sensibility_01_austen_64kb-0870", "prudently", 5170  # mid-word


@pytest.mark.parametrize("doomed_gateway", [{"CHUNK_MS": "100"}], indirect=True)  # it dies 100 ms or less from the cut
async def test_a_gateway_killed_mid_word_then_resumed_elsewhere_loses_no_word_at_the_seam(
    stack: Stack, doomed_gateway: Service
) -> None:
    pcm, _, ref = librivox(SEAM_CLIP)
    lead = silence(300)
    ws, ready = await begin(doomed_gateway.ws_url, source_lang="en")
    sid = ready["session_id"]
    try:
        await speak_unfinished(ws, lead + pcm[: SEAM_CUT_MS * 32])

        async def stored_end_ms() -> int:  # what the gateway produced is stored before it dies
            end_ms = await audio_end_stored(stack, sid)
            return end_ms if end_ms >= 300 + SEAM_CUT_MS - 100 else 0

        stored_ms = await wait_until(stored_end_ms, 30, "the gateway's audio was never stored", every_s=0.2)
        await asyncio.to_thread(doomed_gateway.kill)  # SIGKILL inside the word
        stack.services.remove(doomed_gateway)
    finally:
        await ws.close()
    # the client goes on from what was stored (a client that resends nothing just loses the moment in between)
    rest = pcm[(stored_ms - 300) * 32 :] + silence(1500)
    texts = exactly_one_final_each(await resume_and_speak(stack.ws_url, sid, ready["resume_token"], rest, {0, 1}))
    said = f"{texts[0]} {texts[1]}"
    # decoded apart: "...there might be proof." and "in his power to do for them." (the word at the cut lost)
    assert SEAM_WORD in normalize(said).split(), texts
    assert wer(ref, said) <= 0.1, texts


async def test_a_session_id_alone_takes_nothing_over(stack: Stack) -> None:
    pcm, _, ref = librivox(CLIP_A)
    owner, ready = await begin(stack.ws_url, source_lang="en")
    try:
        for start in (
            {"session_id": ready["session_id"], "received_up_to": -1},
            {"session_id": ready["session_id"], "resume_token": "guessed", "received_up_to": -1},
            {"session_id": "alice"},  # client-chosen ids resume nothing
        ):
            async with connect(stack.ws_url) as thief:
                await thief.send(json.dumps({"type": "start", **start}))
                err = await recv_type(thief, "error")
                assert err["code"] in ("forbidden", "unknown_session") and ready["resume_token"] not in json.dumps(err)
                await thief.send(json.dumps({"type": "ping"}))
                assert (await recv_type(thief, "pong"))["type"] == "pong"  # no final of the owner reaches it
        await speak_unfinished(owner, silence(300) + pcm + silence(1500))  # the owner was never disturbed
        final = await recv_type(owner, "final", timeout_s=90)
        assert final["utterance_index"] == 0 and wer(ref, final["text"]) < 0.2
    finally:
        await owner.close()


@pytest.fixture(scope="module")
def strict_gateway(stack: Stack) -> Iterator[Service]:
    gw = stack.start_gateway(
        MAX_SESSIONS="2",
        MAX_UNSTARTED_CONNECTIONS="8",
        START_TIMEOUT_S="3",
        MAX_REALTIME_FACTOR="3",
        AUDIO_BURST_S="1",
    )
    stack.wait_healthy([gw])
    yield gw
    stack.retire(gw)


async def test_connections_that_never_start_cannot_lock_out_a_real_client(strict_gateway: Service) -> None:
    flood = [await connect(strict_gateway.ws_url) for _ in range(40)]  # 5x MAX_UNSTARTED_CONNECTIONS
    try:
        pcm, _, ref = librivox(CLIP_A)
        rep = await stream_audio(strict_gateway.ws_url, pcm, pace=0, source_lang="en", timeout_s=120)
        assert wer(ref, rep.text) < 0.2
        evicted = json.loads(await asyncio.wait_for(flood[0].recv(), 10))
        assert evicted["code"] == "start_timeout" and evicted["fatal"] is True
        late = json.loads(await asyncio.wait_for(flood[-1].recv(), 10))  # never evicted: its own deadline
        assert late["code"] == "start_timeout"
        status, body = await asyncio.to_thread(http_json, strict_gateway.health_url)
        assert status == 200 and body["kafka"] == "ok", body
    finally:
        await asyncio.gather(*(ws.close() for ws in flood))


async def test_a_full_gateway_says_so_in_health_and_refuses_politely(strict_gateway: Service) -> None:
    first, _ = await begin(strict_gateway.ws_url)
    second, _ = await begin(strict_gateway.ws_url)
    try:
        status, body = await asyncio.to_thread(http_json, strict_gateway.health_url)
        assert status == 503 and body["status"] == "saturated" and body["clients"] == 2, body
        async with connect(strict_gateway.ws_url) as third:
            await third.send(json.dumps({"type": "start"}))
            err = await recv_type(third, "error")
            assert err["code"] == "server_busy" and err["fatal"] is True
    finally:
        await first.close()
        await second.close()
    await wait_until(lambda: health_of(strict_gateway, 200), 10, "the gateway never took sessions again", 0.1)


async def test_audio_faster_than_real_time_is_paced_with_a_clear_error(strict_gateway: Service) -> None:
    pcm, _, ref = librivox(CLIP_A)
    rep = await stream_audio(strict_gateway.ws_url, pcm, pace=0, source_lang="en", timeout_s=120)
    limited = [m for m in rep.of_type("error") if m["code"] == "rate_limited"]
    assert len(limited) == 1 and limited[0]["fatal"] is False and "3x real time" in limited[0]["message"]
    assert wer(ref, rep.text) < 0.2  # paced, not dropped
    metrics = await asyncio.to_thread(http_text, strict_gateway.base_url + "/metrics")
    paced = [ln for ln in metrics.splitlines() if ln.startswith("babelstream_gateway_paced_seconds_total ")]
    assert paced and float(paced[0].split()[1]) > 0


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(addr)
    return found


async def test_worker_web_ports_are_loopback_only_and_serve_health_and_metrics_only(stack: Stack) -> None:
    for svc in stack.services[1:]:  # the STT and translation workers
        port = int(svc.base_url.rsplit(":", 1)[1])
        assert listening_addresses(port) == {"0100007F"}, svc.name  # 127.0.0.1, not 0.0.0.0
        for page in ("/router/", "/table/", "/graph/", "/stats/"):
            status = await asyncio.to_thread(http_status, svc.base_url + page)
            assert status == 404, (svc.name, page, status)
        assert (await asyncio.to_thread(http_json, svc.health_url))[0] == 200


async def tombstoned(stack: Stack, session_id: str) -> bool:
    values = await stack.session_values(session_id)
    return bool(values) and values[-1] is None


async def test_unused_sessions_are_tombstoned_after_their_ttl(stack: Stack) -> None:
    gw = stack.start_gateway(SESSION_RESUME_TTL_S="2")
    try:
        await asyncio.to_thread(stack.wait_healthy, [gw])
        ws, ready = await begin(gw.ws_url)
        await ws.close()
        sid, token = ready["session_id"], ready["resume_token"]
        await wait_until(lambda: tombstoned(stack, sid), 30, "the state was never tombstoned", 0.5)  # every TTL/4
        async with connect(stack.ws_url) as again:  # another gateway's store has seen the tombstone too
            await again.send(json.dumps({"type": "start", "session_id": sid, "resume_token": token}))
            reply = await recv_type(again, "error")
        assert reply["code"] == "unknown_session", reply
    finally:
        await asyncio.to_thread(stack.retire, gw)


async def test_health_says_when_kafka_is_gone(tmp_path: Path) -> None:
    """A gateway whose broker disappears answers 503 'degraded' with kafka 'unreachable', so a load
    balancer stops sending it clients (its own broker here: the shared one must stay up)."""
    with LocalKafka(tmp_path / "kafka", heap_mb=256) as broker:
        own = Stack(broker.bootstrap, tmp_path / "stack", {"AUDIO_PARTITIONS": "1", "RESULTS_PARTITIONS": "1"})
        try:
            gw = own.start_gateway(VAD_VOTE="webrtc")
            await asyncio.to_thread(own.wait_healthy, [gw])
            assert (await asyncio.to_thread(http_json, gw.health_url))[1]["kafka"] == "ok"
            await asyncio.to_thread(broker.stop)
            reply = await wait_until(lambda: health_of(gw, 503), 60, "health never said 503", 0.5)
            assert reply[1]["status"] == "degraded" and reply[1]["kafka"] == "unreachable", reply
            # the outage is in the log, but not as a flood: aiokafka's repeats are held back and counted
            outage_s = time.monotonic()
            while time.monotonic() - outage_s < 10:  # ten seconds of outage: about a thousand lines before
                assert (await asyncio.to_thread(http_json, gw.health_url))[0] == 503
                await asyncio.sleep(0.5)
            lines = gw.log().splitlines()
            assert any("Kafka is unreachable" in ln for ln in lines)
            noise = [ln for ln in lines if " aiokafka" in ln]
            assert len(noise) <= 25, f"{len(noise)} aiokafka lines, e.g. {noise[-3:]}"
        finally:
            await asyncio.to_thread(own.stop)


async def test_a_giant_frame_closes_with_1009_naming_the_limit(stack: Stack) -> None:
    """Over 2 x MAX_FRAME_BYTES the WebSocket layer refuses the frame from its header, before reading it
    (close 1009, the reason names the limit); smaller oversized frames get a JSON frame_too_large."""
    async with connect(stack.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start"}))
        await recv_type(ws, "ready")
        await ws.send(bytes(300 * 1024))  # over MAX_FRAME_BYTES, under the hard limit
        err = await recv_type(ws, "error")
        assert err["code"] == "frame_too_large" and err["fatal"] is False
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(bytes(2 * 256 * 1024 + 1))
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert "exceeds limit" in closed.value.rcvd.reason


async def outcome(ws: ClientConnection, timeout_s: float = 5.0) -> str:
    """'taken' once the connection is told its session went elsewhere (before or after its 'ready'),
    'refused' if its resume was, 'owner' if nothing of the sort comes within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] == "error" and msg["code"] == "session_taken_over":
                    return "taken"
                if msg["type"] == "error" and msg["code"] == "unknown_session":
                    return "refused"
    except TimeoutError:
        return "owner"
    except ConnectionClosed as closed:
        return "taken" if closed.rcvd is not None and closed.rcvd.code == 4001 else "closed"


async def test_two_resumes_at_once_leave_one_owner(stack: Stack) -> None:
    """Two tabs reloading with the same session and token at once: one takes the session over and spends
    the token (a new one in its 'ready'), the other is refused, and the survivor transcribes: no orphan
    that counts but gets nothing."""
    pcm, _, ref = librivox(CLIP_A)
    owner, ready = await begin(stack.ws_url, source_lang="en")
    start = {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
    a, b = await connect(stack.ws_url), await connect(stack.ws_url)
    conns = [owner, a, b]
    try:
        await asyncio.gather(a.send(json.dumps(start)), b.send(json.dumps(start)))
        results = await asyncio.gather(*(outcome(ws) for ws in conns))
        assert results[0] == "taken" and sorted(results[1:]) == ["owner", "refused"], results
        survivor = conns[results.index("owner")]
        await speak_unfinished(survivor, silence(300) + pcm + silence(1500))
        final = await recv_type(survivor, "final", timeout_s=90)
        assert wer(ref, final["text"]) < 0.2
    finally:
        for ws in conns:
            await ws.close()


async def test_an_outage_past_the_buffer_ends_the_session_saying_what_was_not_kept(tmp_path: Path) -> None:
    """Kafka gone longer than OUTAGE_BUFFER_S of speech: the client is told 'unavailable' (reconnect and
    resume later) with the point from which its audio was not kept, not 'internal', nor left hanging; a
    resume meanwhile is answered at once (its own broker here: the shared one must stay up)."""
    pcm = b"".join(librivox(clip)[0] for clip in (CLIP_A, CLIP_B, CLIP_A))  # about 15 s of speech
    with LocalKafka(tmp_path / "kafka", heap_mb=256) as broker:
        own = Stack(broker.bootstrap, tmp_path / "stack", {"AUDIO_PARTITIONS": "1", "RESULTS_PARTITIONS": "1"})
        try:
            gw = own.start_gateway(VAD_VOTE="webrtc", KAFKA_WRITE_TIMEOUT_S="2", OUTAGE_BUFFER_S="3")
            await asyncio.to_thread(own.wait_healthy, [gw])
            ws, ready = await begin(gw.ws_url, source_lang="en")
            await asyncio.to_thread(broker.stop)
            try:
                for off in range(0, len(pcm), FRAME):  # speech: kept while it fits the buffer
                    await ws.send(pcm[off : off + FRAME])
                err = await recv_type(ws, "error", timeout_s=60)
            finally:
                await ws.close()
            assert err["code"] == "unavailable" and err["fatal"] is True, err
            assert "OUTAGE_BUFFER_S" in err["message"] and "was not kept" in err["message"], err

            async def kafka_unreachable() -> bool:  # the gateway's probe has noticed by now (every 5 s)
                return (await asyncio.to_thread(http_json, gw.health_url))[1]["kafka"] == "unreachable"

            await wait_until(kafka_unreachable, 30, "health never said Kafka is unreachable", 0.5)
            async with connect(gw.ws_url) as again:
                resume = {"type": "start", "session_id": ready["session_id"], "resume_token": ready["resume_token"]}
                await again.send(json.dumps(resume))
                reply = await recv_type(again, "error", timeout_s=10)  # it took 15-33 s, timeout after timeout
            assert reply["code"] == "unavailable" and reply["fatal"] is True, reply
        finally:
            await asyncio.to_thread(own.stop)


async def test_speech_during_a_broker_outage_within_the_buffer_is_transcribed_late_but_whole(tmp_path: Path) -> None:
    """Kafka stopped mid-session for 20 s while two clients speak, then back: every utterance of both
    comes through (the gateway kept their speech and wrote it when the broker returned), no error."""
    clips = [librivox(f"sense_and_sensibility_01_austen_64kb-{n}") for n in ("0870", "0880", "0890")]
    pcm = b"".join(c[0] + silence(1500) for c in clips)
    refs = [c[2] for c in clips]
    with LocalKafka(tmp_path / "kafka", heap_mb=256) as broker:
        own = Stack(
            broker.bootstrap,
            tmp_path / "stack",
            {"AUDIO_PARTITIONS": "2", "RESULTS_PARTITIONS": "1", "MODEL_SIZE": "tiny.en", "CPU_THREADS": "1"},
        )
        try:
            gw = own.start_gateway(VAD_VOTE="webrtc", KAFKA_WRITE_TIMEOUT_S="3")
            stt = own.start_worker("stt")
            await asyncio.to_thread(own.wait_healthy, [gw, stt], 180)

            async def outage() -> None:
                await asyncio.sleep(len(clips[0][0]) / 32000 + 3)  # during the second utterance
                await asyncio.to_thread(broker.stop)
                await asyncio.sleep(20)
                await asyncio.to_thread(broker.start)

            talks = [stream_audio(gw.ws_url, pcm, source_lang="en", pace=1.0, timeout_s=240) for _ in range(2)]
            *reports, _ = await asyncio.gather(*talks, outage())
            for rep in reports:
                assert not rep.of_type("error"), rep.of_type("error")
                texts = [f["text"] for f in sorted(rep.finals, key=lambda f: f["utterance_index"])]
                assert wer(" ".join(refs), " ".join(texts)) < 0.25, texts
        finally:
            await asyncio.to_thread(own.stop)


@pytest.fixture(scope="module")
def pacing_gateway(stack: Stack) -> Iterator[Service]:
    gw = stack.start_gateway(
        MAX_REALTIME_FACTOR="1", AUDIO_BURST_S="1", KEEPALIVE_INTERVAL_S="1", KEEPALIVE_TIMEOUT_S="1"
    )
    stack.wait_healthy([gw])
    yield gw
    stack.retire(gw)


async def test_flat_out_clients_are_paced_within_a_bounded_buffer_and_leave_no_ghosts(pacing_gateway: Service) -> None:
    """Four clients sending 256 KiB frames as fast as TCP lets them: each is paced (not closed by the
    keepalive, whose pong waits behind the audio), what the gateway buffers per connection is a few
    frames (it was 32), and once they hang up their sessions are gone at once, not paced on for a minute."""
    gw = pacing_gateway
    frame = (np.random.default_rng(0).standard_normal(128 * 1024) * 300).astype("<i2").tobytes()  # 256 KiB
    async with connect(gw.ws_url, max_size=None) as warm:  # the first audio warms up the VAD and the resampler
        await warm.send(json.dumps({"type": "start", "source_lang": "en"}))
        await warm.send(frame)
        await warm.send(json.dumps({"type": "ping"}))
        await recv_type(warm, "pong", timeout_s=30)
    before = gw.rss_bytes()
    clients = [await connect(gw.ws_url, max_size=None) for _ in range(4)]
    notices: list[list[dict]] = [[] for _ in clients]

    async def flat_out(i: int, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"type": "start", "source_lang": "en"}))

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for msg in ws:
                    notices[i].append(json.loads(msg))

        reader = asyncio.create_task(read())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(8):  # eight keepalive rounds; each frame is 8 s of audio at 1x
                while True:
                    await ws.send(frame)
        reader.cancel()

    try:
        await asyncio.gather(*(flat_out(i, ws) for i, ws in enumerate(clients)))
        grown = gw.rss_bytes() - before
        assert all(ws.close_code is None for ws in clients), [ws.close_code for ws in clients]  # no 1011
        assert all(any(n.get("code") == "rate_limited" for n in got) for got in notices), notices
        # websockets read 32 frames ahead: 8 MiB a client; now 4 (and TCP pushes back)
        assert grown < 4 * 4 * 2**20, f"the gateway grew {grown / 2**20:.0f} MiB for four clients"
    finally:
        for ws in clients:
            ws.transport.abort()  # gone without a goodbye, megabytes still unread on the gateway's side

    async def no_clients() -> bool:  # no ghost sessions: they stop counting as soon as their clients are gone
        return not (await asyncio.to_thread(http_json, gw.health_url))[1]["clients"]

    await wait_until(no_clients, 10, "ghost sessions still count", 0.2)
