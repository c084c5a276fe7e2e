"""Analytics Faust agents over the results topic.

* ``stats``: tumbling-window statistics (words/min, final latency percentiles, languages, errors) in a
  changelog-backed Faust table, served as JSON at ``GET /stats`` on the worker's web port.
* ``archive``: every FINAL, TRANSLATION and ERROR appended to a DuckDB database (``ARCHIVE_DB``) for SQL.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from core.analytics import stats
from core.analytics.archive import Archive
from streams.app import StreamApp

log = logging.getLogger(__name__)


def register_stats_agent(sa: StreamApp, window_s: int = 60, keep_windows: int = 60) -> None:
    app, codecs = sa.app, sa.codecs
    dead_letters = sa.dead_letters("stats")
    changelog = app.topic(
        f"{app.conf.id}-stats-changelog",
        key_type=str,
        value_type=dict,  # type: ignore[arg-type]  # faust's stubs: models only; json dicts work (tested)
        key_serializer="json",
        value_serializer="json",
        partitions=sa.settings.results_partitions,
        compacting=True,
        deleting=False,
        internal=True,
    )
    windows = app.Table(
        "stats",
        default=dict,
        partitions=sa.settings.results_partitions,
        key_type=str,
        value_type=dict,
        changelog_topic=changelog,
    )

    @app.agent(sa.results_topic, name="stats")
    async def collect(stream: Any) -> None:
        async for event in stream.events():
            r = await dead_letters.decode(codecs.result, event.message)
            if r is None:
                continue
            start = stats.window_start(r.created_at_ms, window_s)
            key = f"{event.message.partition}:{start}"
            windows[key] = stats.add_result(windows[key] or stats.empty_window(start, window_s), r)
            oldest = start - keep_windows * window_s * 1000
            for old in [k for k in windows if int(k.split(":")[1]) < oldest]:
                del windows[old]

    @app.page("/stats")
    async def stats_page(web_view: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        merged: dict[int, dict[str, Any]] = {}
        for key, w in list(windows.items()):
            start = int(key.split(":")[1])
            m = merged.setdefault(start, stats.empty_window(start, window_s))
            for field in ("finals", "interims", "translations", "words"):
                m[field] += w[field]
            m["audio_s"] += w["audio_s"]
            m["latency_ms"] += w["latency_ms"]
            m["sessions"] += w["sessions"]
            for field in ("languages", "errors"):
                for k, v in w[field].items():
                    m[field][k] = m[field].get(k, 0) + v
        return web_view.json({"windows": [stats.summarize(merged[k]) for k in sorted(merged)]})


def register_archive_agent(sa: StreamApp, archive: Archive) -> None:
    codecs = sa.codecs
    dead_letters = sa.dead_letters("archive")

    @sa.app.agent(sa.results_topic, name="archive")
    async def archive_results(stream: Any) -> None:
        async for events in stream.take_events(500, within=1.0):
            rows = [r for e in events if (r := await dead_letters.decode(codecs.result, e.message)) is not None]
            await asyncio.to_thread(archive.insert, rows)
