"""Avro values through a Confluent-compatible schema registry (``SCHEMA_REGISTRY_URL``), with
``confluent_kafka.schema_registry``: its client (authentication, TLS, caching), its subject-name
strategies, its ``AvroSerializer`` for writing and its ``AsyncAvroDeserializer`` for reading.

Without a registry, :class:`schemas.codec.AvroCodec` with the pinned ids of ``schemas/ids.json`` does the
same job with no I/O. With one:

* a codec registers its schema once, at start-up, under the subject its strategy names (``topic``:
  ``<topic>-value``, the default; ``record``; ``topic_record``), so writing never calls the registry;
* reading an id it has not seen fetches the writer's schema with the async client: the event loop is
  never blocked. An id the registry does not know (404, three times: a replica may lag a moment) is
  remembered as unknown for ``NEGATIVE_CACHE_S``, so a flood of such records is dead-lettered without a
  request each; while the registry cannot be reached (or answers 5xx, or a proxy answers for it), the
  record waits and is tried again with back-off: a record is never dead-lettered because the registry is
  away; a registry that refuses us (401, 403, 400) stops the consumer with that error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Any, Generic

from confluent_kafka.schema_registry import (
    AsyncSchemaRegistryClient,
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    record_subject_name_strategy,
    topic_record_subject_name_strategy,
    topic_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AsyncAvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

try:  # the HTTP client confluent-kafka's registry client uses: httpx2 where installed, else httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the environment
    import httpx  # type: ignore[no-redef]

from core.settings import Settings
from schemas.codec import CodecError, R, RegistryError, UnknownSchema, load_schema_json, schema_id_of, typed

__all__ = ["ConfluentRegistry", "RegistryCodec", "RegistryError"]

log = logging.getLogger(__name__)

STRATEGIES = {
    "topic": topic_subject_name_strategy,
    "record": record_subject_name_strategy,
    "topic_record": topic_record_subject_name_strategy,
}
REGISTER_ATTEMPTS = 5  # a registration answered 409 (another service registered it at that moment) is tried again
NEGATIVE_CACHE_S = 60.0  # an id the registry said it does not know is not asked about again this long
RETRY_MAX_S = 30.0


def registry_conf(s: Settings) -> dict[str, Any]:
    """The confluent-kafka client configuration the settings give."""
    assert s.schema_registry_url is not None
    conf: dict[str, Any] = {"url": s.schema_registry_url, "timeout": s.schema_registry_timeout_s}
    if s.schema_registry_basic_auth is not None:
        conf["basic.auth.user.info"] = s.schema_registry_basic_auth.get_secret_value()
    if s.schema_registry_ca_file is not None:
        conf["ssl.ca.location"] = str(s.schema_registry_ca_file)
    if s.schema_registry_cert_file is not None:
        conf["ssl.certificate.location"] = str(s.schema_registry_cert_file)
    if s.schema_registry_key_file is not None:
        conf["ssl.key.location"] = str(s.schema_registry_key_file)
    return conf


UNKNOWN_AFTER_TRIES = 3  # a 404 this many times in a row: the id is unknown (one may be a replica lagging)


def _tls_failure(e: BaseException) -> bool:
    """Whether ``e`` (or what caused it) is a TLS handshake or certificate failure."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _misconfigured(e: SchemaRegistryError) -> bool:
    """The registry refuses us (credentials, permissions, a malformed request): asking again will not
    help, and dead-lettering would lose good records; the consumer stops with the error."""
    return 400 <= e.http_status_code < 500 and e.http_status_code not in (404, 408, 429)


class ConfluentRegistry:
    """One registry connection per process: the sync client registers at start-up; the async one (made
    on first use, on the running event loop) resolves writers' schemas while reading."""

    def __init__(self, conf: dict[str, Any], strategy: str = "topic") -> None:
        self.conf = conf
        self.client = SchemaRegistryClient(conf)
        self.strategy = STRATEGIES[strategy]
        self._async: AsyncSchemaRegistryClient | None = None
        self._unknown: dict[int, tuple[float, str]] = {}  # schema id -> (until monotonic s, why)

    @classmethod
    def from_settings(cls, s: Settings) -> ConfluentRegistry:
        return cls(registry_conf(s), s.schema_registry_subject_strategy)

    @property
    def async_client(self) -> AsyncSchemaRegistryClient:
        if self._async is None:
            self._async = AsyncSchemaRegistryClient(self.conf)
        return self._async

    def register(self, subject: str, schema_str: str) -> int:
        """The id of ``schema_str`` under ``subject``, registering it if new. Services starting together
        register the same subject at once, and Apicurio answers all but the first with 409 "already
        exists": that is tried again (the subject is there now)."""
        for attempt in range(REGISTER_ATTEMPTS):
            try:
                registered = self.client.register_schema_full_response(subject, Schema(schema_str, "AVRO"))
                if registered.schema_id is None:
                    raise RegistryError(f"the registry gave {subject!r} no schema id")
                return int(registered.schema_id)
            except SchemaRegistryError as e:
                if e.http_status_code != 409 or attempt == REGISTER_ATTEMPTS - 1:
                    raise RegistryError(f"schema registry refused {subject}: {e}") from e
                time.sleep(0.2 * (attempt + 1))  # at start-up, before any traffic
            except (httpx.HTTPError, OSError) as e:
                if _tls_failure(e):
                    raise RegistryError(
                        f"schema registry {self.conf['url']}: TLS failed ({e}); check SCHEMA_REGISTRY_CA_FILE, "
                        "SCHEMA_REGISTRY_CERT_FILE and SCHEMA_REGISTRY_KEY_FILE"
                    ) from e
                raise RegistryError(f"schema registry {self.conf['url']} unreachable: {e}") from e
        raise AssertionError("unreachable")

    def known_unknown(self, schema_id: int) -> str | None:
        """Why ``schema_id`` cannot be read, if the registry said so less than NEGATIVE_CACHE_S ago."""
        entry = self._unknown.get(schema_id)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._unknown[schema_id]
            return None
        return entry[1]

    def remember_unknown(self, schema_id: int, why: str) -> None:
        if len(self._unknown) > 10_000:
            self._unknown.clear()
        self._unknown[schema_id] = (time.monotonic() + NEGATIVE_CACHE_S, why)


def _to_dict(record: Any, ctx: SerializationContext) -> dict[str, Any]:
    return record.to_avro()


class RegistryCodec(Generic[R]):
    """Encodes and decodes one record type on one topic through the registry (same interface as
    :class:`schemas.codec.AvroCodec`)."""

    def __init__(self, record_type: type[R], registry: ConfluentRegistry, topic: str) -> None:
        self.record_type: type[R] = record_type
        self.registry = registry
        self.topic = topic
        self.schema_str = json.dumps(load_schema_json(record_type.SCHEMA))
        self._ctx = SerializationContext(topic, MessageField.VALUE)
        subject = registry.strategy(self._ctx, record_type.SCHEMA)
        if subject is None:
            raise RegistryError(f"no subject for {record_type.SCHEMA} on {topic}")
        self.subject: str = subject
        self.schema_id = registry.register(self.subject, self.schema_str)  # once; writes never ask again
        self._serializer = AvroSerializer(
            registry.client,
            self.schema_str,
            _to_dict,
            {"auto.register.schemas": True, "subject.name.strategy": registry.strategy},
        )
        self._deserializer: AsyncAvroDeserializer | None = None

    def encode(self, record: R) -> bytes:
        try:
            data = self._serializer(record, self._ctx)
        except (ValueError, TypeError, KeyError) as e:
            raise CodecError(f"cannot encode {type(record).__name__}: {e}") from e
        assert data is not None
        return data

    async def decode_async(self, data: bytes | None) -> R:
        """The typed record; every way a value can be unreadable raises :class:`CodecError`; waits (and
        retries) while the registry cannot be asked."""
        schema_id = schema_id_of(data)
        assert data is not None
        if (why := self.registry.known_unknown(schema_id)) is not None:
            raise UnknownSchema(f"cannot resolve writer schema id {schema_id}: {why}")
        if self._deserializer is None:
            self._deserializer = await AsyncAvroDeserializer(self.registry.async_client, self.schema_str)
        delay_s, not_found = 0.5, 0
        while True:
            try:
                value = await self._deserializer(data, None)
                break
            except SchemaRegistryError as e:
                if _misconfigured(e):
                    raise RegistryError(f"the schema registry refuses to resolve id {schema_id}: {e}") from e
                if e.http_status_code == 404:
                    not_found += 1
                    if not_found >= UNKNOWN_AFTER_TRIES:
                        self.registry.remember_unknown(schema_id, str(e))
                        raise UnknownSchema(f"cannot resolve writer schema id {schema_id}: {e}") from e
                problem: BaseException = e
            except (httpx.TransportError, OSError, json.JSONDecodeError) as e:  # away, or a proxy's error page
                problem = e
            except Exception as e:  # fastavro and the serde raise several types on corrupt input
                raise CodecError(f"corrupt Avro body for schema id {schema_id}: {e}") from e
            if not_found == 0:
                log.warning(
                    "schema registry unavailable (%s); id %d tried again in %.1f s", problem, schema_id, delay_s
                )
            await asyncio.sleep(delay_s if not_found == 0 else 0.2 * not_found)
            delay_s = min(RETRY_MAX_S, delay_s * 2)
        if not isinstance(value, dict):
            raise CodecError(f"schema id {schema_id} does not hold a {self.record_type.__name__} record")
        return typed(self.record_type, value)
