"""Read a bounded range of a topic: the partitions asked for, from a time, an offset or the start, up to a
time or the end as of the call. Shared by the session-results reader (a resumed session's backfill,
subtitle export) and replay (re-transcription of stored audio)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from core.settings import Settings
from schemas.records import Result
from streams.deadletter import DeadLetters
from streams.endpoint import Kafka, KafkaEndpoint, endpoint
from streams.lifetime import running
from streams.topics import Codecs, partition_ids, partition_of, topic_specs


async def topic_partitions(bootstrap: Kafka, topic: str, session_id: str | None = None) -> list[TopicPartition]:
    """Every partition of ``topic``, or the one holding ``session_id``'s records."""
    parts = await partition_ids(bootstrap, topic)
    if not parts:
        raise RuntimeError(f"topic {topic} does not exist")
    if session_id is not None:
        parts = [partition_of(session_id, len(parts))]
    return [TopicPartition(topic, p) for p in parts]


async def read_range(
    bootstrap: Kafka,
    tps: list[TopicPartition],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    from_offset: int | None = None,
    progress: list[int] | None = None,
) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """Yield the records of ``tps`` in the range, partition by partition in offset order. ``progress``, if
    given, is set to ``[records read, records in the range]`` as reading goes."""
    consumer = AIOKafkaConsumer(**endpoint(bootstrap).client_kwargs(), group_id=None, enable_auto_commit=False)
    async with running(consumer, consumer.stop):
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        if since_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            starts = {tp: (o.offset if o else ends[tp]) for tp, o in found.items()}
        if from_offset is not None:
            starts = {tp: max(starts[tp], from_offset) for tp in tps}
        if until_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(tps, until_ms))
            ends = {tp: (o.offset if o else ends[tp]) for tp, o in found.items()}
        for tp in tps:
            consumer.seek(tp, starts[tp])  # explicit offsets: no pending auto-reset can move them
        total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        done = 0
        if progress is not None:
            progress[:] = [done, total]
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        break
                    done += 1
                    if progress is not None:
                        progress[:] = [done, total]
                    yield rec
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)


async def read_session_results(
    bootstrap: Kafka,
    topic: str,
    codecs: Codecs,
    session_id: str,
    dead_letters: DeadLetters,
    since_ms: int | None = None,
) -> list[Result]:
    """A session's results from ``since_ms`` (or the start) to now; an unreadable record is dead-lettered
    and the others are still returned."""
    return [r for _, r in await read_session_positions(bootstrap, topic, codecs, session_id, dead_letters, since_ms)]


async def read_session_positions(
    bootstrap: Kafka,
    topic: str,
    codecs: Codecs,
    session_id: str,
    dead_letters: DeadLetters,
    since_ms: int | None = None,
    from_offset: int | None = None,
) -> list[tuple[int, Result]]:
    """The same as :func:`read_session_results`, each result with its offset (its position: a session's
    results are all in one partition); ``from_offset``: from there on only."""
    key = session_id.encode()
    out: list[tuple[int, Result]] = []
    tps = await topic_partitions(bootstrap, topic, session_id)
    records = read_range(bootstrap, tps, since_ms=since_ms, from_offset=from_offset)
    async with aclosing(records):  # closed when cancelled too
        async for rec in records:
            if rec.key != key:
                continue
            if (r := await dead_letters.decode(codecs.result, rec)) is not None:
                out.append((rec.offset, r))
    return out


async def stored_session_results(settings: Settings, session_id: str, version: str = "live") -> list[Result]:
    """What the results topic of ``version`` holds for one session, all of it up to the current end (subtitle
    export, the analytics tests). Read-only: an unreadable record is logged and counted, not copied (the live
    consumers dead-letter them)."""
    topics = topic_specs(settings, version)
    return await read_session_results(
        KafkaEndpoint.from_settings(settings),
        topics.results.name,
        Codecs.create(settings, topics),
        session_id,
        DeadLetters("export", None),
    )
