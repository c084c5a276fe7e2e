"""Avro encoding in the Confluent wire format: ``0x00`` magic byte, 4-byte big-endian schema id, then
the schemaless Avro body. Any Confluent-compatible consumer (kcat -s avro, ksqlDB, Kafka Connect with
the pinned ids registered) can read what Babelstream writes.

The codec needs only a :class:`SchemaRegistry`: :class:`PinnedRegistry` (ids fixed in ``schemas/ids.json``,
no I/O) lives here; with a Confluent-compatible registry service, ``streams.registry.RegistryCodec`` (the
confluent-kafka client and serializers) takes the codec's place."""

from __future__ import annotations

import io
import json
import struct
from typing import Any, Generic, Protocol, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas import SCHEMA_DIR
from schemas.errors import BabelstreamError
from schemas.records import Audience, AudioEvent, Result, SessionState

SCHEMA_FILES = {
    "io.babelstream.audio.AudioEvent": "audio_event.avsc",
    "io.babelstream.results.Result": "result.avsc",
    "io.babelstream.sessions.SessionState": "session_state.avsc",
    "io.babelstream.broadcasts.Audience": "audience.avsc",
}


class RegistryError(BabelstreamError, RuntimeError):
    """The schema registry refused a schema, or gave no usable answer."""


def load_schema_json(name: str) -> dict[str, Any]:
    try:
        schema: dict[str, Any] = json.loads((SCHEMA_DIR / SCHEMA_FILES[name]).read_text())
    except KeyError:
        raise RegistryError(f"unknown schema {name!r}") from None
    return schema


def _ids_file() -> dict[str, Any]:
    ids: dict[str, Any] = json.loads((SCHEMA_DIR / "ids.json").read_text())
    return ids


def pinned_ids() -> dict[str, int]:
    """The id each current schema is written with."""
    return {k: int(v) for k, v in _ids_file().items() if not k.startswith("_")}


def historic_schemas() -> dict[int, dict[str, Any]]:
    """Earlier versions, by the id data written with them carries (still read, never written)."""
    return {int(i): json.loads((SCHEMA_DIR / f).read_text()) for i, f in _ids_file().get("_history", {}).items()}


class SchemaRegistry(Protocol):
    def register(self, subject: str, name: str) -> int: ...

    def schema_by_id(self, schema_id: int) -> dict[str, Any]: ...


class PinnedRegistry:
    def __init__(self) -> None:
        self._ids = pinned_ids()
        self._by_id: dict[int, dict[str, Any]] = {i: _parsed(load_schema_json(n)) for n, i in self._ids.items()}
        self._by_id.update({i: _parsed(schema) for i, schema in historic_schemas().items()})

    def register(self, subject: str, name: str) -> int:
        try:
            return self._ids[name]
        except KeyError:
            raise RegistryError(f"schema {name!r} has no pinned id in schemas/ids.json") from None

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise RegistryError(f"unknown schema id {schema_id}") from None


MAGIC = 0
_HEADER = struct.Struct(">bI")


class CodecError(BabelstreamError, ValueError):
    """A value that cannot be read as its record type: not the wire format, a corrupt body, an invalid
    record, or (:class:`UnknownSchema`) a writer schema this reader cannot resolve."""


class UnknownSchema(CodecError):
    """The writer's schema id is not known here (a newer writer, or the registry unreachable): the record
    may be perfectly good, so it is never deleted for it."""


R = TypeVar("R", AudioEvent, Result, SessionState, Audience)
R_co = TypeVar("R_co", AudioEvent, Result, SessionState, Audience, covariant=True)


class AvroCodec(Generic[R]):
    """Encodes/decodes one record type; readers resolve older/newer writer schemas by id."""

    def __init__(self, record_type: type[R], registry: SchemaRegistry, subject: str) -> None:
        self.record_type: type[R] = record_type
        self.registry = registry
        self.schema = _parsed(load_schema_json(record_type.SCHEMA))
        self.schema_id = registry.register(subject, record_type.SCHEMA)

    def encode(self, record: R) -> bytes:
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, self.schema_id))
        try:
            schemaless_writer(buf, self.schema, record.to_avro())
        except (ValueError, TypeError, KeyError) as e:
            raise CodecError(f"cannot encode {type(record).__name__}: {e}") from e
        return buf.getvalue()

    def decode_dict(self, data: bytes | None) -> dict[str, Any]:
        schema_id = schema_id_of(data)
        assert data is not None
        try:
            writer = self.schema if schema_id == self.schema_id else self.registry.schema_by_id(schema_id)
        except RegistryError as e:
            raise UnknownSchema(f"cannot resolve writer schema id {schema_id}: {e}") from e
        try:
            d = schemaless_reader(io.BytesIO(data[_HEADER.size :]), writer, self.schema)
        except Exception as e:  # fastavro raises several types on corrupt input
            raise CodecError(f"corrupt Avro body for schema id {schema_id}: {e}") from e
        if not isinstance(d, dict):
            raise CodecError(f"schema id {schema_id} does not describe a record")
        return d

    def decode(self, data: bytes | None) -> R:
        """The typed record; every way a value can be unreadable raises :class:`CodecError`."""
        return typed(self.record_type, self.decode_dict(data))

    async def decode_async(self, data: bytes | None) -> R:
        """The same as :meth:`decode` (pinned schemas are all local: nothing to wait for)."""
        return self.decode(data)


class Codec(Protocol[R_co]):
    """What producers and consumers use: :class:`AvroCodec` (pinned ids) or, with a registry service,
    ``streams.registry.RegistryCodec``."""

    schema_id: int

    def encode(self, record: Any) -> bytes: ...

    async def decode_async(self, data: bytes | None) -> R_co: ...


def schema_id_of(data: bytes | None) -> int:
    """The schema id of a Confluent wire-format value; :class:`CodecError` if it is not one."""
    if data is None:
        raise CodecError("message has no value (null)")
    if len(data) < _HEADER.size:
        raise CodecError(f"message of {len(data)} bytes is too short for the Confluent wire format")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"unknown magic byte {magic}; not Confluent wire format")
    return int(schema_id)


def typed(record_type: type[R], d: dict[str, Any]) -> R:
    """The record type's value of a decoded Avro dict; :class:`CodecError` if it is invalid."""
    try:
        record: R = record_type.from_avro(d)
    except (TypeError, ValueError, KeyError) as e:
        raise CodecError(f"{record_type.__name__} record is invalid: {e}") from e
    return record


def _parsed(schema: dict[str, Any]) -> dict[str, Any]:
    """fastavro's parsed form of a record schema."""
    parsed = parse_schema(schema)
    assert isinstance(parsed, dict)
    return parsed
