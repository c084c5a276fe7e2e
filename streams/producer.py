"""The producer used outside Faust agents (gateway, replay, tests): Avro-encodes records and sends them
keyed by session id with idempotence and ``acks=all``, so a session's events stay in order."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from schemas.records import MAX_MESSAGE_BYTES, Audience, AudioEvent, Result, SessionState
from streams.endpoint import Kafka, endpoint
from streams.errors import delivery, named_kafka_errors
from streams.topics import Codecs, Topics, partition_of, session_key


class EventProducer:
    def __init__(self, bootstrap: Kafka, topics: Topics, codecs: Codecs, *, linger_ms: int = 5) -> None:
        self.topics = topics
        self.codecs = codecs
        self._producer = AIOKafkaProducer(
            **endpoint(bootstrap).client_kwargs(),
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_request_size=MAX_MESSAGE_BYTES,
            compression_type=None,
        )

    @named_kafka_errors
    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Every send queues a record and returns its delivery future (await it to know it is stored); a send
    # and a delivery fail with streams.errors' KafkaError: KafkaUnavailable, KafkaRejected, RecordTooLarge.
    @named_kafka_errors
    async def send_audio(self, event: AudioEvent) -> asyncio.Future[object]:
        return delivery(
            await self._producer.send(
                self.topics.audio.name, self.codecs.audio.encode(event), key=session_key(event.session_id)
            )
        )

    @named_kafka_errors
    async def send_result(self, result: Result, topic: str | None = None) -> asyncio.Future[object]:
        return delivery(
            await self._producer.send(
                topic or self.topics.results.name,
                self.codecs.result.encode(result),
                key=session_key(result.session_id),
            )
        )

    @named_kafka_errors
    async def send_session(self, state: SessionState) -> asyncio.Future[object]:
        return delivery(
            await self._producer.send(
                self.topics.sessions.name, self.codecs.session.encode(state), key=session_key(state.session_id)
            )
        )

    @named_kafka_errors
    async def delete_session(self, session_id: str, partition: int | None = None) -> asyncio.Future[object]:
        """Tombstone a session's state: compaction removes it, and no one can resume it any more.
        ``partition``: where a record to supersede lies, when not in the key's own partition."""
        return delivery(
            await self._producer.send(self.topics.sessions.name, None, key=session_key(session_id), partition=partition)
        )

    @named_kafka_errors
    async def send_audience(self, audience: Audience) -> asyncio.Future[object]:
        """One gateway's audience of a broadcast, in its session's partition: every record of one broadcast
        is then read by one translation worker, in order (its back-fill, ``agents.translate``)."""
        topic = self.topics.audiences.name
        partition = await self._partition_of(topic, audience.session_id)
        value = self.codecs.audience.encode(audience)
        return delivery(await self._producer.send(topic, value, key=audience.key.encode(), partition=partition))

    @named_kafka_errors
    async def delete_audience(self, key: str, session_id: str) -> asyncio.Future[object]:
        """Tombstone one gateway's audience of a broadcast (nobody watches it there any more)."""
        topic = self.topics.audiences.name
        partition = await self._partition_of(topic, session_id)
        return delivery(await self._producer.send(topic, None, key=key.encode(), partition=partition))

    async def _partition_of(self, topic: str, session_id: str) -> int:
        return partition_of(session_id, len(await self._producer.partitions_for(topic)))

    async def kafka_reachable(self, timeout_s: float = 5.0) -> bool:
        """Whether the cluster answered a metadata request just now."""
        try:
            return bool(await asyncio.wait_for(self._producer.client.force_metadata_update(), timeout_s))
        except (TimeoutError, OSError):
            return False

    @named_kafka_errors
    async def send_dead_letter(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Copy a bad record to the dead-letter topic (``streams.deadletter``) and wait until it is stored."""
        await delivery(await self._producer.send(self.topics.dlq.name, value, key=key, headers=headers))

    @named_kafka_errors
    async def flush(self) -> None:
        await self._producer.flush()
