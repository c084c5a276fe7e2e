"""Read what the results topic holds for one session (from its partition, up to the current end)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from babelstream.replay import partition_of
from babelstream.settings import Settings
from streams.records import Result
from streams.topics import Codecs, partition_ids, topic_specs


async def read_session_results(settings: Settings, session_id: str, version: str = "live") -> list[Result]:
    topics = topic_specs(settings, version)
    codecs = Codecs.create(settings, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partition_ids(settings.bootstrap, topics.results.name)
        if not parts:
            raise RuntimeError(f"results topic {topics.results.name} does not exist")
        tp = TopicPartition(topics.results.name, partition_of(session_id, len(parts)))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[Result] = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                for rec in records:
                    if rec.key == session_id.encode():
                        out.append(codecs.result.decode(rec.value))
        return out
    finally:
        await consumer.stop()
