"""Shared fixtures: one real Kafka broker for the whole session, test audio, settings."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from core.settings import Settings, load_settings
from streams.broker import LocalKafka
from streams.topics import ensure_topics, topic_specs
from tests.stack import Stack

REPO = Path(__file__).resolve().parent.parent
TIERS = ("unit", "machine", "integration", "e2e", "compose")  # a test's folder is its tier; they run in this order


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier (``bin/test -m unit`` selects one) and run the fast tiers first, so a
    broken unit fails the run in seconds instead of after the end-to-end tests."""
    rank = {}
    for item in items:
        tier = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, machine, integration, e2e or compose")
        item.add_marker(tier)
        rank[item.nodeid] = TIERS.index(tier)
    items.sort(key=lambda it: rank[it.nodeid])  # stable: the order within a tier stays as collected


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real broker: $KAFKA_BOOTSTRAP_SERVERS if set, else a local KRaft broker started here."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), heap_mb=384)
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def make_settings(kafka_bootstrap: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the test broker, with a topic prefix of their own so tests never share topics."""

    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic_prefix": f"t{uuid.uuid4().hex[:10]}",
            "audio_partitions": 4,
            "results_partitions": 2,
            "state_dir": tmp_path / "state",
        }
        base.update(overrides)
        return load_settings(**base)

    return make


@pytest.fixture
async def settings(make_settings: Callable[..., Settings]) -> AsyncIterator[Settings]:
    s = make_settings()
    await asyncio.wait_for(ensure_topics(s.bootstrap, topic_specs(s).all()), 60)
    yield s


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required by the test suite; bin/test installs it")
    return path


@pytest.fixture(scope="session")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Gateway + one STT worker (packaged multilingual Whisper base) + one translation worker."""
    st = Stack(
        kafka_bootstrap,
        Path(tmp_path_factory.mktemp("stack")),
        {"AUDIO_PARTITIONS": "4", "RESULTS_PARTITIONS": "2", "MODEL_SIZE": "base"},
    )
    try:
        gw = st.start_gateway()
        stt = st.start_worker("stt")
        tr = st.start_worker("translate")
        st.wait_healthy([gw, stt, tr], timeout_s=180)
        st.wait_assigned([stt], partitions=4, timeout_s=120)
        yield st
    finally:
        st.stop()
