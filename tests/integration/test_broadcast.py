"""Broadcasts through the real gateway and Kafka: a broadcast start gives viewers an id and a token, the
speaker's rotation and end are stored in the session state on the compacted topic, and a resume on another
gateway keeps the broadcast (and never tells the viewers' token again)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from core.settings import load_settings
from gateway.broadcast import may_watch
from schemas.records import SessionState
from streams.topics import Codecs, topic_specs
from tests.stack import Stack, recv_type
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


async def stored_state(stack: Stack, session_id: str) -> SessionState | None:
    """The session's newest state as the compacted sessions topic holds it."""
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
    values = await stack.session_values(session_id)
    last = values[-1] if values else None
    return None if last is None else Codecs.create(s, topic_specs(s)).session.decode(last)


async def test_a_broadcast_is_stored_rotated_ended_and_survives_a_resume_on_another_gateway(stack: Stack) -> None:
    other = stack.start_gateway()
    try:
        async with connect(stack.ws_url) as ws:
            await ws.send(json.dumps({"type": "start", "broadcast": True}))
            ready = await recv_type(ws, "ready")
            b = ready["broadcast"]
            sid, token = ready["session_id"], ready["resume_token"]
            assert b["broadcast_id"] and b["viewer_token"] and not b["public"] and not b["ended"]
            state = await stored_state(stack, sid)  # stored before 'ready' (its first state is durable)
            assert state is not None and may_watch(state, b["broadcast_id"], b["viewer_token"])
            await ws.send(json.dumps({"type": "rotate_viewer_token"}))
            rotated = await recv_type(ws, "broadcast")
            assert rotated["viewer_token"] not in (None, b["viewer_token"])
            state = await stored_state(stack, sid)  # stored before the speaker is told
            assert state is not None and may_watch(state, b["broadcast_id"], rotated["viewer_token"])
            assert not may_watch(state, b["broadcast_id"], b["viewer_token"])
        await asyncio.to_thread(stack.wait_healthy, [other])
        async with connect(other.ws_url) as ws:  # another gateway: it knows the session from Kafka only
            await ws.send(json.dumps({"type": "start", "session_id": sid, "resume_token": token}))
            again = await recv_type(ws, "ready")
            assert again["resumed"] and again["broadcast"]["broadcast_id"] == b["broadcast_id"]
            assert again["broadcast"]["viewer_token"] is None  # only its digest is kept
            await ws.send(json.dumps({"type": "end_broadcast"}))
            assert (await recv_type(ws, "broadcast"))["ended"] is True
            await ws.send(json.dumps({"type": "rotate_viewer_token"}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert refused["type"] == "error" and refused["code"] == "broadcast_ended" and not refused["fatal"]

        async def ended() -> bool:
            st = await stored_state(stack, sid)
            return st is not None and st.broadcast_ended

        await wait_until(ended, 20, "the ended broadcast was never stored")
    finally:
        stack.retire(other)


async def test_viewer_controls_from_a_plain_session_are_refused_and_the_session_goes_on(stack: Stack) -> None:
    async with connect(stack.ws_url) as ws:
        await ws.send(json.dumps({"type": "end_broadcast"}))  # before start: not started
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["code"] == "not_started" and not first["fatal"]
        await ws.send(json.dumps({"type": "start"}))
        ready = await recv_type(ws, "ready")
        assert ready["broadcast"] is None
        for kind in ("rotate_viewer_token", "end_broadcast"):
            await ws.send(json.dumps({"type": kind}))
            err = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert err["code"] == "not_broadcast" and not err["fatal"], err
        await ws.send(json.dumps({"type": "start", "public": True}))  # public without broadcast
        err = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert err["code"] == "invalid_message" and "broadcast=true" in err["message"], err
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_type(ws, "pong"))["type"] == "pong"
