"""The local KRaft broker formats and starts with any cluster id, one that begins with '-' too (such an id,
kept in a state folder from before, used to be read as an option by Kafka's StorageTool)."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from streams.broker import LocalKafka

pytestmark = pytest.mark.timeout(180)


def test_broker_starts_with_a_cluster_id_that_begins_with_a_dash(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    data.mkdir()
    cluster_id = base64.urlsafe_b64encode(b"\xf8" + bytes(range(15))).decode().rstrip("=")
    assert cluster_id.startswith("-")
    (data / "cluster.id").write_text(cluster_id)
    with LocalKafka(data, heap_mb=256) as broker:
        host, port = broker.bootstrap.split(":")
        with socket.create_connection((host, int(port)), timeout=5):
            pass
        meta = (data / "logs" / "meta.properties").read_text()
        assert f"cluster.id={cluster_id}" in meta
