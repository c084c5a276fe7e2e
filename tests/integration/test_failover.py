"""Two STT workers share the audio partitions; one is SIGKILLed mid-utterance and nothing is lost."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from core.settings import load_settings
from schemas.records import AudioEvent, AudioEventKind, ResultKind
from streams.producer import EventProducer
from streams.topics import Codecs, ensure_topics, topic_specs
from tests.audio import librivox, wer
from tests.stack import Stack, http_text
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

PARTITIONS = 4


def sessions_covering(partitions: int, per_partition: int = 2) -> dict[str, int]:
    out: dict[str, int] = {}
    counts = dict.fromkeys(range(partitions), 0)
    while min(counts.values()) < per_partition:
        sid = f"fo-{uuid.uuid4().hex[:8]}"
        p = DefaultPartitioner()(sid.encode(), list(range(partitions)), list(range(partitions)))
        if counts[p] < per_partition:
            counts[p] += 1
            out[sid] = p
    return out


async def test_worker_killed_mid_utterance_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    st = Stack(
        kafka_bootstrap,
        tmp_path,
        {
            "AUDIO_PARTITIONS": str(PARTITIONS),
            "RESULTS_PARTITIONS": "2",
            "MODEL_SIZE": "tiny.en",
            "INTERIM_INTERVAL_MS": "2000",
            "INTERIM_MAX_LAG_MS": "600000",  # interims however far behind: the test waits for one per session
            "INTERIM_MAX_WAIT_MS": "600000",
        },
    )
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=st.prefix,
        audio_partitions=PARTITIONS,
        results_partitions=2,
    )
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    await ensure_topics(kafka_bootstrap, topics.all())
    consumer = AIOKafkaConsumer(
        topics.results.name, bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    results: list = []

    async def collect() -> None:
        while True:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                results.extend(codecs.result.decode(r.value) for r in recs)

    collector = asyncio.create_task(collect())
    try:
        a = st.start_worker("stt")
        b = st.start_worker("stt")
        await asyncio.to_thread(st.wait_healthy, [a, b], 180)
        assignment = await asyncio.to_thread(st.wait_assigned, [a, b], PARTITIONS)  # both hold some
        owned = list(assignment.values())
        assert not set(owned[0]) & set(owned[1]), f"a partition has two owners: {assignment}"
        a_parts = set((await asyncio.to_thread(a.health))[1]["audio_partitions"])

        sessions = sessions_covering(PARTITIONS)
        pcm, _, ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
        chunk = 16000 * 2 // 2  # 500 ms
        async with EventProducer(kafka_bootstrap, topics, codecs) as producer:
            futs = []
            for sid in sessions:
                for seq, off in enumerate(range(0, len(pcm), chunk)):
                    ev = AudioEvent(sid, 0, seq, AudioEventKind.CHUNK, pcm[off : off + chunk], off // 32)
                    futs.append(await producer.send_audio(ev))
            await asyncio.gather(*futs)

            # both workers are mid-utterance: each session has had an interim, none has ended

            def every_session_has(kind: ResultKind) -> bool:
                if collector.done():
                    collector.result()  # raises what stopped the collector
                return {r.session_id for r in results if r.kind is kind} == set(sessions)

            await wait_until(lambda: every_session_has(ResultKind.REALTIME), 120, "interims missing", every_s=0.2)
            assert not [r for r in results if r.kind is ResultKind.FINAL]
            for w in (a, b):  # both workers did real work
                metrics = await asyncio.to_thread(http_text, w.base_url + "/metrics")
                [interims] = [ln for ln in metrics.splitlines() if ln.startswith("babelstream_stt_interims_total ")]
                assert float(interims.split()[1]) >= 1

            await asyncio.to_thread(a.kill)  # SIGKILL: no commit, no leave-group
            n_chunks = -(-len(pcm) // chunk)
            futs = [
                await producer.send_audio(
                    AudioEvent(sid, 0, n_chunks, AudioEventKind.END, b"", len(pcm) // 32, end_reason="silence")
                )
                for sid in sessions
            ]
            await asyncio.gather(*futs)

        await wait_until(
            lambda: every_session_has(ResultKind.FINAL), 150, lambda: f"finals missing; worker b log:\n{b.log()}", 0.2
        )
        finals = {r.session_id: r for r in results if r.kind is ResultKind.FINAL}
        for sid, part in sessions.items():
            # the whole utterance, including the audio the dead worker had read, is transcribed
            assert wer(ref, finals[sid].text) < 0.25, (sid, part in a_parts, finals[sid].text)
            assert finals[sid].audio_end_ms - finals[sid].audio_start_ms >= len(pcm) // 32 - 10
        assert set((await asyncio.to_thread(b.health))[1]["audio_partitions"]) == set(range(PARTITIONS))
    finally:
        collector.cancel()
        await consumer.stop()
        await asyncio.to_thread(st.stop)


async def test_an_abandoned_utterance_is_finalised_on_an_idle_partition(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A gateway gone mid-utterance with no takeover: nothing more arrives on the partition, yet the
    utterance is finalised after the abandon time (4 x MAX_UTTERANCE_S) and its events are acked, so the
    consumer lag an autoscaler reads goes back to 0."""
    st = Stack(
        kafka_bootstrap,
        tmp_path,
        {"AUDIO_PARTITIONS": "2", "RESULTS_PARTITIONS": "1", "STT_ENGINE": "null", "MAX_UTTERANCE_S": "1"},
    )
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap, topic_prefix=st.prefix, audio_partitions=2, results_partitions=1
    )
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    await ensure_topics(kafka_bootstrap, topics.all())
    consumer = AIOKafkaConsumer(
        topics.results.name, bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        worker = st.start_worker("stt")
        await asyncio.to_thread(st.wait_healthy, [worker], 180)
        await asyncio.to_thread(st.wait_assigned, [worker], 2)
        sid = f"gone-{uuid.uuid4().hex[:8]}"
        pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0870")
        async with EventProducer(kafka_bootstrap, topics, codecs) as producer:
            for seq in range(2):  # one second of speech, then the gateway is gone: no END, ever
                chunk = pcm[seq * 16000 : (seq + 1) * 16000]
                await (await producer.send_audio(AudioEvent(sid, 0, seq, AudioEventKind.CHUNK, chunk, seq * 500)))
        final = None
        async with asyncio.timeout(60):
            while final is None:
                for recs in (await consumer.getmany(timeout_ms=200)).values():
                    mine = [codecs.result.decode(r.value) for r in recs if r.key == sid.encode()]
                    final = next((r for r in mine if r.kind is ResultKind.FINAL), final)
        assert final.audio_end_ms - final.audio_start_ms >= 900  # what it had
        async with asyncio.timeout(30):  # acked: the lag of every audio partition is back to 0
            while True:
                metrics = await asyncio.to_thread(http_text, worker.base_url + "/metrics")
                lags = [
                    float(ln.split()[-1])
                    for ln in metrics.splitlines()
                    if ln.startswith("babelstream_consumer_lag{") and topics.audio.name in ln
                ]
                if lags and not any(lags):
                    break
                await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await asyncio.to_thread(st.stop)
