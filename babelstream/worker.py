"""Start a Faust worker for one role: ``stt`` or ``translate``."""

from __future__ import annotations

import asyncio
import logging

import faust

from babelstream.settings import Settings
from streams.app import create_app
from streams.topics import ensure_topics, topic_specs

log = logging.getLogger(__name__)

ROLES = ("stt", "translate")


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
        from babelstream.engines.stt import make_stt_engine

        register_stt_agent(sa, make_stt_engine(settings))
    else:
        from agents.translate import register_translate_agent
        from babelstream.engines.translate import TranslationRouter

        register_translate_agent(sa, TranslationRouter.from_settings(settings))
    return sa.app


def run_worker(settings: Settings, role: str, loglevel: str = "info") -> None:
    specs = topic_specs(settings).all()
    asyncio.run(ensure_topics(settings.bootstrap, specs))
    app = build_worker_app(settings, role)
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
