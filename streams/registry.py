"""Schema ids for the Confluent wire format, from a registry service.

Two interchangeable registries:

* :class:`schemas.codec.PinnedRegistry` (default): ids are fixed in ``schemas/ids.json`` and documented,
  so data written without a registry service still carries stable ids that never change.
* :class:`ConfluentRegistry` (``SCHEMA_REGISTRY_URL``): talks to any Confluent-compatible schema
  registry (Confluent, Karapace, Apicurio ccompat, Redpanda), registering ``<topic>-value`` subjects
  and resolving unknown ids from writers that used another schema version.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

from fastavro import parse_schema

from schemas.codec import PinnedRegistry, RegistryError, SchemaRegistry, load_schema_json

__all__ = ["ConfluentRegistry", "RegistryError", "make_registry"]


class ConfluentRegistry:
    """Minimal client of the Confluent Schema Registry REST API (register + lookup by id)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, dict[str, Any]] = {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise RegistryError(f"schema registry {method} {path}: {e.code} {e.read()[:500]!r}") from e
        except OSError as e:
            raise RegistryError(f"schema registry {self.url} unreachable: {e}") from e

    def register(self, subject: str, name: str) -> int:
        with self._lock:
            if (subject, name) not in self._ids:
                schema = load_schema_json(name)
                out = self._call("POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema)})
                self._ids[(subject, name)] = int(out["id"])
                self._by_id[int(out["id"])] = parse_schema(schema)
            return self._ids[(subject, name)]

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        with self._lock:
            if schema_id not in self._by_id:
                out = self._call("GET", f"/schemas/ids/{schema_id}")
                self._by_id[schema_id] = parse_schema(json.loads(out["schema"]))
            return self._by_id[schema_id]


def make_registry(url: str | None) -> SchemaRegistry:
    return ConfluentRegistry(url) if url else PinnedRegistry()
