"""The one error policy for records that cannot be used: the dead-letter topic ``<prefix>.dlq.v1``.

A record that does not decode (empty value, unknown schema id, corrupt Avro) or that is invalid
(``sample_rate_hz=0``, odd-length PCM...) or whose handling raises, is copied to the dead-letter topic
unchanged (same key, same value) with headers saying where it came from and why, counted in
``babelstream_dead_letters_total``, and then skipped: the consumer acks it and goes on, so one bad record
never stops delivery or wedges a partition. The header names follow Kafka Connect's DLQ convention.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from prometheus_client import Counter

from schemas.codec import Codec, CodecError
from schemas.records import Audience, AudioEvent, Result, SessionState, now_ms

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "babelstream_dead_letters_total", "Records sent to the dead-letter topic", ["stage", "topic", "reason"]
)

Headers = list[tuple[str, bytes]]
Publish = Callable[[bytes | None, bytes | None, Headers], Awaitable[None]]
R = TypeVar("R", AudioEvent, Result, SessionState, Audience)


class SourceRecord(Protocol):
    """What aiokafka's ConsumerRecord and Faust's Message both have."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


Held = dict[tuple[int, bytes], tuple[SourceRecord, CodecError]]  # unreadable, by partition and key


class DeadLetters:
    """Dead-letters records for one consumer (``stage``: ``stt``, ``translate``, ``gateway-results``...)."""

    def __init__(self, stage: str, publish: Publish | None) -> None:
        """``publish(key, value, headers)`` writes to the dead-letter topic; None only logs and counts (for
        read-only tools such as export, which must not write to the cluster)."""
        self.stage = stage
        self._publish = publish

    async def send(self, rec: SourceRecord, error: BaseException | str, reason: str = "invalid") -> None:
        message = str(error)[:2000]
        DEAD_LETTERS.labels(self.stage, rec.topic, reason).inc()
        log.warning("dead-lettering %s[%d]@%d (%s): %s", rec.topic, rec.partition, rec.offset, self.stage, message)
        headers: Headers = [
            ("__connect.errors.topic", rec.topic.encode()),
            ("__connect.errors.partition", str(rec.partition).encode()),
            ("__connect.errors.offset", str(rec.offset).encode()),
            ("__connect.errors.exception.message", message.encode()),
            ("babelstream.errors.stage", self.stage.encode()),
            ("babelstream.errors.reason", reason.encode()),
            ("babelstream.errors.at_ms", str(now_ms()).encode()),
        ]
        if self._publish is not None:
            await self._publish(rec.key, rec.value, headers)

    async def decode(self, codec: Codec[R], rec: SourceRecord, held: Held | None = None) -> R | None:
        """The typed record, or None once an unreadable or invalid one has been dead-lettered, or (with
        ``held``) kept there by key instead: a follower replaying a compacted topic's history, where a later
        record of the same key may supersede it, dead-letters what is left when it has caught up."""
        try:
            return await codec.decode_async(rec.value)
        except CodecError as e:
            if held is not None and rec.key is not None:
                held[rec.partition, rec.key] = (rec, e)
            else:
                await self.send(rec, e, "undecodable")
            return None
