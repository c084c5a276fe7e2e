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

from core.engines.stt import SttEngine
from core.settings import Settings
from core.utterances import DecodeFinal, UtteranceAssembler, utterance_result
from schemas.records import ResultKind
from streams.deadletter import DeadLetters
from streams.endpoint import KafkaEndpoint
from streams.producer import EventProducer
from streams.reader import read_range, topic_partitions
from streams.topics import Codecs, ensure_topics, topic_specs

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
    kafka = KafkaEndpoint.from_settings(settings)
    await ensure_topics(kafka, [out.results, out.dlq])
    codecs = Codecs.create(settings, src)
    stats = ReplayStats(out.results.name)
    tps = await topic_partitions(kafka, src.audio.name, session_id)
    assembler = UtteranceAssembler(
        interim_interval_ms=0, seam_wait_ms=settings.seam_wait_ms, join_within_ms=settings.silence_ms
    )
    counts = [0, 0]
    async with EventProducer(kafka, out, codecs) as producer:
        dead_letters = DeadLetters(f"replay-{tag}", producer.send_dead_letter)
        records = read_range(kafka, tps, since_ms=since_ms, until_ms=until_ms, from_offset=from_offset, progress=counts)
        async for rec in records:
            ev = await dead_letters.decode(codecs.audio, rec)
            if ev is not None and (session_id is None or ev.session_id == session_id):
                action = assembler.add(ev, now_ms=0)
                if isinstance(action, DecodeFinal):
                    await _transcribe(action, engine, tag, producer, stats, settings)
            if progress is not None:
                progress(*counts)
        for stale in assembler.abandoned(clock_ms=2**62):  # utterances cut by the range end
            await _transcribe(stale, engine, tag, producer, stats, settings)
        await producer.flush()
    stats.records = counts[0]
    return stats


async def _transcribe(
    action: DecodeFinal, engine: SttEngine, tag: str, producer: EventProducer, stats: ReplayStats, settings: Settings
) -> None:
    u = action.utterance
    audio, from_ms = u.speech(settings.trim_margin_ms, settings.normalize_audio)
    t = await asyncio.to_thread(engine.transcribe, audio, language=u.source_lang, final=True, vocabulary=u.vocabulary)
    result = utterance_result(u, ResultKind.FINAL, engine.name, tag, t, decoded_from_ms=from_ms)
    await (await producer.send_result(result))
    stats.utterances += 1
    stats.audio_s += u.audio_ms / 1000
    stats.texts[u.utterance_id] = t.text
