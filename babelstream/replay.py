"""Re-transcribe stored audio from the audio topic with another model or settings.

Reads a range of the audio topic (one session's partition or all, from/until a time or offsets),
rebuilds each utterance, transcribes it and writes FINAL results tagged with a version to
``<prefix>.results.<tag>.v1``, leaving the live results untouched. With greedy decoding
(``BEAM_SIZE=1``) the same audio and model give the same text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from babelstream.engines.stt import SttEngine
from babelstream.settings import Settings
from babelstream.utterances import Final, UtteranceAssembler, utterance_result
from streams.producer import EventProducer
from streams.records import ResultKind
from streams.topics import Codecs, ensure_topics, partition_ids, partition_of, topic_specs

log = logging.getLogger(__name__)


@dataclass
class ReplayStats:
    topic: str
    records: int = 0
    utterances: int = 0
    audio_s: float = 0.0
    texts: dict[str, str] = field(default_factory=dict)


async def replay(
    settings: Settings,
    engine: SttEngine,
    tag: str,
    *,
    session_id: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    from_offset: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayStats:
    src = topic_specs(settings)
    out = topic_specs(settings, tag)
    await ensure_topics(settings.bootstrap, [out.results])
    codecs = Codecs.create(settings, src)
    stats = ReplayStats(out.results.name)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partition_ids(settings.bootstrap, src.audio.name)
        if not parts:
            raise RuntimeError(f"audio topic {src.audio.name} does not exist")
        if session_id is not None:
            parts = [partition_of(session_id, len(parts))]
        tps = [TopicPartition(src.audio.name, p) for p in parts]
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
            consumer.seek(tp, starts[tp])
        total = sum(max(0, ends[tp] - starts[tp]) for tp in tps)
        assembler = UtteranceAssembler(interim_interval_ms=0)
        done = 0
        async with EventProducer(settings.bootstrap, out, codecs) as producer:
            remaining = {tp for tp in tps if starts[tp] < ends[tp]}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batch.items():
                    for rec in records:
                        if rec.offset >= ends[tp]:
                            remaining.discard(tp)
                            break
                        done += 1
                        ev = codecs.audio.decode(rec.value)
                        if session_id is not None and ev.session_id != session_id:
                            continue
                        action = assembler.add(ev, now_ms=0)
                        if isinstance(action, Final):
                            await _transcribe(action, engine, tag, producer, stats)
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                if progress is not None:
                    progress(done, total)
            for stale in assembler.abandoned(clock_ms=2**62):  # utterances cut by the range end
                await _transcribe(stale, engine, tag, producer, stats)
            await producer.flush()
        stats.records = done
    finally:
        await consumer.stop()
    return stats


async def _transcribe(action: Final, engine: SttEngine, tag: str, producer: EventProducer, stats: ReplayStats) -> None:
    u = action.utterance
    t = await asyncio.to_thread(engine.transcribe, u.audio(), language=u.source_lang, final=True)
    result = utterance_result(u, ResultKind.FINAL, engine.name, tag, t)
    await (await producer.send_result(result))
    stats.utterances += 1
    stats.audio_s += u.audio_ms / 1000
    stats.texts[u.utterance_id] = t.text
