"""Start a Faust worker for one role: ``stt`` or ``translate``."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal

import faust

from babelstream.logs import hold_back_repeats
from core.settings import Settings
from streams.app import create_app
from streams.endpoint import KafkaEndpoint
from streams.topics import ensure_topics, topic_specs

log = logging.getLogger(__name__)

ROLES = ("stt", "translate", "stats", "archive")


def build_worker_app(settings: Settings, role: str, results_version: str = "live") -> faust.App:
    if role not in ROLES:
        raise ValueError(f"unknown worker role {role!r}; expected one of {ROLES}")
    sa = create_app(
        settings,
        role,
        results_version=results_version,
        group_suffix="" if results_version == "live" else f"-{results_version}",
    )
    if role == "stt":
        from agents.stt import register_stt_agent
        from core.engines.factory import make_stt_engine
        from core.engines.translate import TranslationRouter

        register_stt_agent(sa, make_stt_engine(settings), TranslationRouter.from_settings(settings))
    elif role == "translate":
        from agents.translate import register_translate_agent
        from core.engines.translate import TranslationRouter

        register_translate_agent(sa, TranslationRouter.from_settings(settings))
    elif role == "stats":
        from agents.analytics import register_stats_agent

        register_stats_agent(sa, settings.stats_window_s, settings.stats_keep_windows)
    else:
        from agents.analytics import register_archive_agent
        from core.analytics.archive import Archive

        register_archive_agent(sa, Archive(settings.archive_path))
    return sa.app


def _dump_tasks() -> None:
    """SIGUSR1: log every asyncio task's await chain (diagnosing a stuck worker in production)."""
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"task {task.get_name()}:")
        coro: object = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    log.warning("asyncio tasks:\n%s", "\n".join(lines))


def run_worker(settings: Settings, role: str, loglevel: str = "info") -> None:
    specs = topic_specs(settings).all()
    asyncio.run(ensure_topics(KafkaEndpoint.from_settings(settings), specs))
    app = build_worker_app(settings, role)

    @app.task
    async def _install_diagnostics() -> None:
        hold_back_repeats()  # Faust's worker has set up its logging by now
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
        faulthandler.register(signal.SIGUSR2, all_threads=True)

    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
