"""An STT worker is SIGKILLed while a batch of finals is in the engine: every client still gets exactly one
FINAL per utterance, with the whole utterance's text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from babelstream.client import StreamReport, stream_audio
from tests.audio import librivox, silence, wer
from tests.stack import Service, Stack, http_text
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(420)

CLIENTS = 6


def decoding(worker: Service) -> float:
    """How many decodes the worker's engine is running now (0 when it is down)."""
    try:
        text = http_text(worker.base_url + "/metrics", timeout_s=1.0)
    except OSError:
        return 0.0
    lines = [ln for ln in text.splitlines() if ln.startswith("babelstream_stt_decoding ")]
    return float(lines[0].split()[1]) if lines else 0.0


async def test_worker_killed_with_a_batch_in_flight_each_client_gets_one_final(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    st = Stack(
        kafka_bootstrap,
        tmp_path,
        {
            "AUDIO_PARTITIONS": "4",
            "MODEL_SIZE": "tiny.en",
            "MAX_BATCH_SIZE": "8",
            "BATCH_WAIT_MS": "1500",  # the sessions' finals go to the engine together
            "PAUSE_MS": "0",  # no speculative finals: every final is decoded in a batch
            "INTERIM_INTERVAL_MS": "600000",
        },
    )
    try:
        gateway = st.start_gateway()
        workers = [st.start_worker("stt"), st.start_worker("stt")]
        await asyncio.to_thread(st.wait_healthy, [gateway, *workers], 180)
        await asyncio.to_thread(st.wait_assigned, workers, 4)
        pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
        audio = pcm + silence(1500) + pcm  # two utterances per client

        clients = [asyncio.create_task(stream_audio(st.ws_url, audio, pace=0, timeout_s=300)) for _ in range(CLIENTS)]

        async def mid_batch() -> Service | None:
            for w in workers:
                if await asyncio.to_thread(decoding, w) >= 2:
                    return w
            return None

        killed = await wait_until(mid_batch, 240, "no batch of several finals was ever seen in flight")
        await asyncio.to_thread(killed.kill)  # SIGKILL mid-batch: no commit, no leave-group
        reports: list[StreamReport] = await asyncio.gather(*clients)

        survivor = next(w for w in workers if w is not killed)
        for rep in reports:
            finals = rep.of_type("final")
            by_segment = [m["utterance_index"] for m in finals]
            assert sorted(by_segment) == sorted(set(by_segment)), f"a FINAL came twice: {by_segment}"
            assert len(finals) == 2, (finals, survivor.log()[-3000:])
            for m in finals:
                assert wer(ref, m["text"]) < 0.25, m["text"]
    finally:
        await asyncio.to_thread(st.stop)
