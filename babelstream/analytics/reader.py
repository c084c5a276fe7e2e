"""Read what the results topic holds for one session (all of it, up to the current end)."""

from __future__ import annotations

from babelstream.settings import Settings
from streams.reader import read_session_results as read_topic
from streams.records import Result
from streams.topics import Codecs, topic_specs


async def read_session_results(settings: Settings, session_id: str, version: str = "live") -> list[Result]:
    topics = topic_specs(settings, version)
    return await read_topic(settings.bootstrap, topics.results.name, Codecs.create(settings, topics), session_id)
