"""The one Faust app definition. Each worker role (``stt``, ``translate``) instantiates it with its own
consumer group id, registers its agent (``agents/``) and runs it with ``babelstream worker ROLE``.

Values travel as raw bytes in the Confluent Avro wire format (``schemas.codec``); keys are session ids.
Each worker serves ``/healthz`` and Prometheus ``/metrics`` on its Faust web port.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import faust
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from core.settings import Settings
from schemas.records import MAX_MESSAGE_BYTES
from streams.deadletter import DeadLetters
from streams.endpoint import KafkaEndpoint
from streams.topics import Codecs, Topics, topic_specs


@dataclass
class StreamApp:
    app: faust.App
    settings: Settings
    topics: Topics
    codecs: Codecs
    audio_topic: faust.TopicT
    results_topic: faust.TopicT
    results_out_topic: faust.TopicT
    audiences_topic: faust.TopicT
    dlq_topic: faust.TopicT
    results_version: str = "live"

    def dead_letters(self, stage: str) -> DeadLetters:
        """The error policy of an agent: bad records to the dead-letter topic (``streams.deadletter``)."""

        async def publish(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> None:
            await (await self.dlq_topic.send(key=key, value=value, headers=headers))

        return DeadLetters(stage, publish)


log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "babelstream_consumer_lag",
    "Records of a partition this worker owns that its group has not committed yet (KEDA scales on the same)",
    ["group", "topic", "partition"],
)
LAG_INTERVAL_S = 5.0


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


def create_app(settings: Settings, role: str, *, results_version: str = "live", group_suffix: str = "") -> StreamApp:
    topics = topic_specs(settings)
    out_topics = topic_specs(settings, results_version)
    app_id = f"{settings.topic_prefix}-{role}{group_suffix}"
    datadir = settings.state_dir / "faust" / f"{app_id}-{os.getpid()}"  # memory store: stays nearly empty
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        app_id,
        broker=broker_urls(settings.bootstrap),
        broker_credentials=KafkaEndpoint.from_settings(settings).faust_credentials(),
        store="memory://",
        datadir=str(datadir),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.audio_partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=50,
        broker_commit_interval=0.5,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_request_timeout=40.0,
        producer_acks=-1,
        producer_max_request_size=MAX_MESSAGE_BYTES,
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        stream_wait_empty=False,
        web_enabled=True,
        web_host=settings.worker_web_host,
        web_bind=settings.worker_web_host,  # listen where told (loopback by default), not on every interface
        web_port=settings.worker_web_port,
        # only /healthz and /metrics: Faust's router, table, stats and graph pages stay off
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_in_thread=False,
        table_standby_replicas=0,
    )
    codecs = Codecs.create(settings, topics)
    sa = StreamApp(
        app=app,
        settings=settings,
        topics=topics,
        codecs=codecs,
        audio_topic=app.topic(topics.audio.name, key_type=bytes, value_type=bytes, internal=False),
        results_topic=app.topic(topics.results.name, key_type=bytes, value_type=bytes, internal=False),
        results_out_topic=app.topic(out_topics.results.name, key_type=bytes, value_type=bytes, internal=False),
        audiences_topic=app.topic(topics.audiences.name, key_type=bytes, value_type=bytes, internal=False),
        dlq_topic=app.topic(topics.dlq.name, key_type=bytes, value_type=bytes, internal=False),
        results_version=results_version,
    )

    @app.page("/healthz")
    async def healthz(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ready = app.consumer is not None and not app.should_stop and app.rebalancing is False
        assignment = app.consumer.assignment() if app.consumer is not None else set()
        assigned = sorted(tp.partition for tp in assignment if tp.topic == topics.audio.name)
        body = {"status": "ok" if ready else "starting", "role": role, "app": app_id, "audio_partitions": assigned}
        return web_view.json(body, status=200 if ready else 503)

    @app.timer(LAG_INTERVAL_S)
    async def report_lag() -> None:
        """Each owned partition's end offset minus the group's committed offset (the position read so
        far, before the first commit); partitions that moved away are forgotten."""
        if app.rebalancing:
            return
        lags: dict[tuple[str, str, str], int] = {}
        try:  # an exception out of a Faust timer would stop the worker: a gauge is not worth that
            consumer = app.consumer
            committed_offsets = getattr(consumer, "_committed_offset", {})  # Faust keeps what it committed
            for tp in consumer.assignment():
                end = consumer.highwater(tp)
                done = committed_offsets.get(tp)
                if done is None:
                    done = await consumer.position(tp)
                if end is not None and done is not None:
                    lags[app_id, tp.topic, str(tp.partition)] = max(0, end - done)
        except Exception as e:  # not started yet, stopping, or moving partitions in a rebalance
            log.debug("consumer lag not read: %r", e)
            return
        CONSUMER_LAG.clear()
        for labels, lag in lags.items():
            CONSUMER_LAG.labels(*labels).set(lag)

    @app.page("/metrics")  # type: ignore[arg-type]  # faust's stubs want its Response; it serves aiohttp's
    async def metrics(web_view: faust.web.View, request: faust.web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return sa
