"""Read what the results topic holds for one session (all of it, up to the current end)."""

from __future__ import annotations

from babelstream.settings import Settings
from schemas.records import Result
from streams.deadletter import DeadLetters
from streams.endpoint import KafkaEndpoint
from streams.reader import read_session_results as read_topic
from streams.topics import Codecs, topic_specs


async def read_session_results(settings: Settings, session_id: str, version: str = "live") -> list[Result]:
    topics = topic_specs(settings, version)
    codecs = Codecs.create(settings, topics)
    # read-only: unreadable records are logged and counted, not copied (the live consumers dead-letter them)
    return await read_topic(
        KafkaEndpoint.from_settings(settings), topics.results.name, codecs, session_id, DeadLetters("export", None)
    )
