"""The composed stack for real: images built offline (a debootstrap base image, the host's wheelhouse, Kafka
from the Maven Central jars), `docker compose up`, real speech through the composed gateway with
translation, then `--scale stt=2` and one STT container SIGKILLed mid-utterance: every utterance's final
still arrives, once. The commands are the README's (compose.offline.yaml). Skipped, with the reason, only
where no Docker engine can start."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from babelstream.client import StreamReport, stream_audio
from gateway.auth import new_api_key
from schemas.records import secret_digest
from streams.broker import free_port
from tests.audio import librivox, silence, wer
from tests.docker import NoEngine, docker, ensure_compose, ensure_engine, offline_inputs

pytestmark = pytest.mark.timeout(2400)  # a fresh machine builds Compose, the base images and the images

PROJECT = "babelstream-test"
FILES = ("-f", "compose.yaml", "-f", "compose.offline.yaml")


@dataclass
class Composed:
    env: dict[str, str]
    key: str
    ws_url: str
    http_url: str

    def compose(self, *args: str, timeout_s: float = 1500) -> str:
        return docker("compose", "-p", PROJECT, *FILES, *args, timeout_s=timeout_s, env=self.env)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def healthy(self, service: str) -> list[str]:
        out = []
        for cid in self.containers(service):
            state = json.loads(docker("inspect", "--format", "{{json .State}}", cid))
            if state.get("Health", {}).get("Status") == "healthy":
                out.append(cid)
        return out


@pytest.fixture(scope="module")
def composed() -> Iterator[Composed]:
    try:
        ensure_engine()
        ensure_compose()
    except NoEngine as e:
        pytest.skip(f"no Docker engine can start here: {e}")
    key = new_api_key()
    ws_port, http_port = free_port(), free_port()
    offline_inputs()
    env = {
        **os.environ,
        "BABELSTREAM_API_KEYS": f"tester:{secret_digest(key)}",
        "GATEWAY_WS_PORT": str(ws_port),
        "GATEWAY_HTTP_PORT": str(http_port),
    }
    c = Composed(env, key, f"ws://127.0.0.1:{ws_port}", f"http://127.0.0.1:{http_port}")
    c.compose("down", "-v", "--remove-orphans", timeout_s=120)  # what an interrupted run left
    try:
        t0 = time.monotonic()
        c.compose("build")
        c.compose("up", "-d", "--wait", "--wait-timeout", "300")
        print(f"compose: built and up in {time.monotonic() - t0:.0f} s")
        yield c
    finally:
        logs = c.compose("logs", "--no-color", "--tail", "50", timeout_s=60)
        print(logs[-6000:])
        c.compose("down", "-v", "--remove-orphans", timeout_s=300)


async def test_speech_through_the_composed_stack_with_translation(composed: Composed) -> None:
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
    rep = await stream_audio(
        composed.ws_url,
        pcm,
        source_lang="en",
        target_lang="pt",
        translate=True,
        pace=0,
        api_key=composed.key,
        timeout_s=300,
    )
    assert wer(ref, rep.text) < 0.2, rep.text
    assert len(rep.translations) == len(rep.finals) >= 1
    assert "dashwood" in " ".join(t["text"] for t in rep.translations).lower()


async def test_an_stt_container_killed_mid_utterance_loses_no_final(composed: Composed) -> None:
    await asyncio.to_thread(composed.compose, "up", "-d", "--wait", "--no-recreate", "--scale", "stt=2")
    assert len(await asyncio.to_thread(composed.healthy, "stt")) == 2
    pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
    audio = silence(500) + pcm + silence(1500) + pcm  # two utterances per client
    decoding = [asyncio.Event() for _ in range(3)]  # per client: an interim of its first utterance came

    def watch(event: asyncio.Event):  # type: ignore[no-untyped-def]
        def on_message(msg: dict) -> None:
            if msg.get("type") == "realtime":
                event.set()

        return on_message

    clients = [
        asyncio.create_task(
            stream_audio(composed.ws_url, audio, pace=1, api_key=composed.key, on_message=watch(ev), timeout_s=600)
        )
        for ev in decoding
    ]
    # mid-utterance: every session's audio is on Kafka and being decoded, no final yet
    await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in decoding)), 120)
    victim = (await asyncio.to_thread(composed.containers, "stt"))[0]
    await asyncio.to_thread(docker, "kill", "--signal", "KILL", victim)
    reports: list[StreamReport] = await asyncio.gather(*clients)
    for rep in reports:
        ended = sorted(m["utterance_index"] for m in rep.of_type("utterance_end"))
        finals = Counter(m["utterance_index"] for m in rep.of_type("final"))
        assert ended and sorted(finals) == ended, rep.messages
        assert set(finals.values()) == {1}, finals  # once each, however the work moved
        assert wer(f"{ref} {ref}", rep.text) < 0.2, rep.text
