"""Every Kafka topic Babelstream uses, defined in one place.

| topic                          | key        | value (schemas/)    | policy                       |
|--------------------------------|------------|---------------------|------------------------------|
| ``<prefix>.audio.v1``          | session id | AudioEvent          | delete, AUDIO_RETENTION_MS   |
| ``<prefix>.results.v1``        | session id | Result              | delete, RESULTS_RETENTION_MS |
| ``<prefix>.results.<tag>.v1``  | session id | Result (replays)    | delete, RESULTS_RETENTION_MS |
| ``<prefix>.sessions.v1``       | session id | SessionState        | compact                      |
| ``<prefix>.audiences.v1``      | bcast@gw   | Audience            | compact                      |
| ``<prefix>.dlq.v1``            | as source  | the bad record as is| delete, AUDIO_RETENTION_MS   |

Keys are the UTF-8 session id, so Kafka's default (murmur2) partitioner keeps a session on one
partition and its events in order. An audience record's key is ``<broadcast_id>@<gateway_id>``: each
gateway's viewers of a broadcast, superseded by that gateway's next record (``gateway.audience``).
Partitions bound parallelism: a consumer group uses at most as many workers as the audio topic has
partitions; :func:`ensure_topics` grows partition counts when the settings ask for more (it never
shrinks them).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import InvalidPartitionsError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from core.settings import Settings
from schemas.codec import AvroCodec, Codec, PinnedRegistry
from schemas.records import MAX_MESSAGE_BYTES, Audience, AudioEvent, Result, SessionState
from streams.endpoint import Kafka, endpoint
from streams.errors import named_kafka_errors
from streams.lifetime import running
from streams.registry import ConfluentRegistry, RegistryCodec

log = logging.getLogger(__name__)

_TAG_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """Schema-registry subject (TopicNameStrategy)."""
        return f"{self.name}-value"


@dataclass(frozen=True)
class Topics:
    audio: TopicSpec
    results: TopicSpec
    sessions: TopicSpec
    audiences: TopicSpec
    dlq: TopicSpec

    def all(self) -> list[TopicSpec]:
        return [self.audio, self.results, self.sessions, self.audiences, self.dlq]


def results_topic_name(settings: Settings, version: str = "live") -> str:
    if version == "live":
        return f"{settings.topic_prefix}.results.v1"
    if not _TAG_RE.match(version):
        raise ValueError(f"invalid results version tag {version!r}: use letters, digits, '.', '_', '-'")
    return f"{settings.topic_prefix}.results.{version}.v1"


def topic_specs(settings: Settings, results_version: str = "live") -> Topics:
    return Topics(
        audio=TopicSpec(
            f"{settings.topic_prefix}.audio.v1",
            settings.audio_partitions,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(settings.audio_retention_ms),
                "max.message.bytes": str(MAX_MESSAGE_BYTES),
            },
        ),
        results=TopicSpec(
            results_topic_name(settings, results_version),
            settings.results_partitions,
            {"cleanup.policy": "delete", "retention.ms": str(settings.results_retention_ms)},
        ),
        sessions=TopicSpec(
            f"{settings.topic_prefix}.sessions.v1",
            settings.results_partitions,
            {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"},
        ),
        audiences=TopicSpec(
            f"{settings.topic_prefix}.audiences.v1",
            settings.results_partitions,
            {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "3600000"},
        ),
        dlq=TopicSpec(
            f"{settings.topic_prefix}.dlq.v1",
            1,
            {
                "cleanup.policy": "delete",
                "retention.ms": str(settings.audio_retention_ms),
                "max.message.bytes": str(MAX_MESSAGE_BYTES),
            },
        ),
    )


@dataclass(frozen=True)
class Codecs:
    audio: Codec[AudioEvent]
    result: Codec[Result]
    session: Codec[SessionState]
    audience: Codec[Audience]

    @classmethod
    def create(cls, settings: Settings, topics: Topics, registry: ConfluentRegistry | None = None) -> Codecs:
        """Pinned ids without SCHEMA_REGISTRY_URL; with it, the registry's (schemas registered now)."""
        if registry is None and settings.schema_registry_url:
            registry = ConfluentRegistry.from_settings(settings)
        if registry is not None:
            return cls(
                audio=RegistryCodec(AudioEvent, registry, topics.audio.name),
                result=RegistryCodec(Result, registry, topics.results.name),
                session=RegistryCodec(SessionState, registry, topics.sessions.name),
                audience=RegistryCodec(Audience, registry, topics.audiences.name),
            )
        pinned = PinnedRegistry()
        return cls(
            audio=AvroCodec(AudioEvent, pinned, topics.audio.subject),
            result=AvroCodec(Result, pinned, topics.results.subject),
            session=AvroCodec(SessionState, pinned, topics.sessions.subject),
            audience=AvroCodec(Audience, pinned, topics.audiences.subject),
        )


def session_key(session_id: str) -> bytes:
    return session_id.encode()


def partition_of(session_id: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a session's key."""
    all_parts = list(range(partitions))
    return int(DefaultPartitioner()(session_key(session_id), all_parts, all_parts))


@named_kafka_errors
async def ensure_topics(bootstrap: Kafka, specs: list[TopicSpec], timeout_ms: int = 30000) -> None:
    """Create missing topics and grow partition counts; idempotent, safe to call from every service."""
    admin = AIOKafkaAdminClient(**endpoint(bootstrap).client_kwargs(), request_timeout_ms=timeout_ms)
    async with running(admin, admin.close):
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in missing],
                    timeout_ms=timeout_ms,
                )
            except TopicAlreadyExistsError:
                pass
            log.info("created topics %s", [s.name for s in missing])
        present = [s for s in specs if s.name in existing]
        for attempt in range(10):
            if not present:
                break
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            grow = {s.name: NewPartitions(s.partitions) for s in present if counts.get(s.name, 0) < s.partitions}
            if not grow:
                break
            try:
                await admin.create_partitions(grow, timeout_ms=timeout_ms)
                log.info("grew partitions: %s", {k: v.total_count for k, v in grow.items()})
                break
            except InvalidPartitionsError:
                # another service grew it (or created it) a moment ago; look again
                await asyncio.sleep(0.2 * (attempt + 1))


@named_kafka_errors
async def partition_ids(bootstrap: Kafka, topic: str, timeout_ms: int = 30000) -> list[int]:
    """The partitions of ``topic`` (empty if it does not exist)."""
    admin = AIOKafkaAdminClient(**endpoint(bootstrap).client_kwargs(), request_timeout_ms=timeout_ms)
    async with running(admin, admin.close):
        described = await admin.describe_topics([topic])
    return sorted(
        p["partition"] for d in described if d["topic"] == topic and not d["error_code"] for p in d["partitions"]
    )


async def assign_all_partitions(
    consumer: AIOKafkaConsumer, topic: str, timeout_s: float = 30.0
) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to a group-less consumer (waiting for metadata of a new topic)."""
    async with asyncio.timeout(timeout_s):
        while not (parts := consumer.partitions_for_topic(topic)):
            await consumer._client.force_metadata_update()  # aiokafka has no public refresh for assign()
            await asyncio.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    return tps
