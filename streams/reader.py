"""Read back what a topic holds for one session: its partition, from a time (or the start) to the end."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.records import Result
from streams.topics import Codecs, partition_ids, partition_of


async def read_session_results(
    bootstrap: str, topic: str, codecs: Codecs, session_id: str, since_ms: int | None = None
) -> list[Result]:
    parts = await partition_ids(bootstrap, topic)
    if not parts:
        raise RuntimeError(f"results topic {topic} does not exist")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition_of(session_id, len(parts)))
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = (await consumer.beginning_offsets([tp]))[tp]
        if since_ms is not None:
            found = (await consumer.offsets_for_times({tp: since_ms}))[tp]
            start = found.offset if found else end
        consumer.seek(tp, start)  # an explicit offset: no pending auto-reset can move it
        out: list[Result] = []
        key = session_id.encode()
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                out.extend(codecs.result.decode(r.value) for r in records if r.key == key and r.offset < end)
        return out
    finally:
        await consumer.stop()
