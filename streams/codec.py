"""Avro encoding in the Confluent wire format: ``0x00`` magic byte, 4-byte big-endian schema id, then
the schemaless Avro body. Any Confluent-compatible consumer (kcat -s avro, ksqlDB, Kafka Connect with
the pinned ids registered) can read what Babelstream writes."""

from __future__ import annotations

import io
import struct
from typing import Any, Generic, Protocol, TypeVar

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streams.records import AudioEvent, Result, SessionState
from streams.registry import SchemaRegistry, load_schema_json

MAGIC = 0
_HEADER = struct.Struct(">bI")


class CodecError(ValueError):
    pass


class AvroRecord(Protocol):
    SCHEMA: str

    def to_avro(self) -> dict[str, Any]: ...


R = TypeVar("R", AudioEvent, Result, SessionState)


class AvroCodec(Generic[R]):
    """Encodes/decodes one record type; readers resolve older/newer writer schemas by id."""

    def __init__(self, record_type: type[R], registry: SchemaRegistry, subject: str) -> None:
        self.record_type = record_type
        self.registry = registry
        self.schema = parse_schema(load_schema_json(record_type.SCHEMA))
        self.schema_id = registry.register(subject, record_type.SCHEMA)

    def encode(self, record: R) -> bytes:
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, self.schema_id))
        try:
            schemaless_writer(buf, self.schema, record.to_avro())
        except (ValueError, TypeError, KeyError) as e:
            raise CodecError(f"cannot encode {type(record).__name__}: {e}") from e
        return buf.getvalue()

    def decode_dict(self, data: bytes) -> dict[str, Any]:
        if len(data) < _HEADER.size:
            raise CodecError(f"message of {len(data)} bytes is too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise CodecError(f"unknown magic byte {magic}; not Confluent wire format")
        writer = self.schema if schema_id == self.schema_id else self.registry.schema_by_id(schema_id)
        try:
            return schemaless_reader(io.BytesIO(data[_HEADER.size :]), writer, self.schema)
        except Exception as e:  # fastavro raises several types on corrupt input
            raise CodecError(f"corrupt Avro body for schema id {schema_id}: {e}") from e

    def decode(self, data: bytes) -> R:
        return self.record_type.from_avro(self.decode_dict(data))  # type: ignore[return-value]
