"""Short-lived Kafka clients close however their caller ends: a resumed session's backfill is cancelled
when its client hangs up at any moment (real broker)."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

from core.settings import load_settings
from schemas.records import Result, ResultKind
from streams import lifetime
from streams.deadletter import DeadLetters
from streams.producer import EventProducer
from streams.reader import read_session_results
from streams.topics import Codecs, topic_specs
from tests.stack import Stack
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


async def test_cancelled_backfills_leave_no_connection_open(stack: Stack) -> None:
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
    topics = topic_specs(s)
    codecs = Codecs.create(s, topics)
    async with EventProducer(stack.bootstrap, topics, codecs) as producer:
        for i in range(20):
            await (await producer.send_result(Result("reader-probe", i, ResultKind.FINAL, f"text {i}")))
    unclosed: list[Any] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, ctx: unclosed.append(ctx.get("message")))
    dead_letters = DeadLetters("test", None)
    whole = await read_session_results(stack.bootstrap, topics.results.name, codecs, "reader-probe", dead_letters)
    assert [r.utterance_index for r in whole] == list(range(20))  # the reader reads, uncancelled
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for cycle in range(150):  # cancelled in the admin lookup, the consumer's start, its reads...
            task = asyncio.create_task(
                read_session_results(stack.bootstrap, topics.results.name, codecs, "reader-probe", dead_letters)
            )
            await asyncio.sleep((cycle % 50) * 0.001)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # closes that outlived their (cancelled) callers finish
        await wait_until(lambda: not lifetime._closing, 30, lambda: f"closes never finished: {lifetime._closing}")
        gc.collect()
        await asyncio.sleep(0.1)
    leaks = [str(w.message) for w in caught if "Unclosed" in str(w.message)] + [u for u in unclosed if u]
    assert not leaks, leaks[:3]
