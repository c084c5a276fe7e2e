"""Kafka's refusals reach callers named for what they are (real broker): a record over the cap on one
message is :class:`RecordTooLarge`, not "the broker cannot be reached"."""

from __future__ import annotations

import pytest

from core.settings import load_settings
from schemas.records import MAX_MESSAGE_BYTES, Result, ResultKind
from streams.errors import KafkaRejected, RecordTooLarge
from streams.producer import EventProducer
from streams.topics import Codecs, topic_specs
from tests.stack import Stack

pytestmark = pytest.mark.timeout(120)


async def test_a_record_over_the_cap_is_refused_as_too_large_and_the_producer_goes_on(stack: Stack) -> None:
    s = load_settings(kafka_bootstrap_servers=stack.bootstrap, topic_prefix=stack.prefix)
    topics = topic_specs(s)
    async with EventProducer(stack.bootstrap, topics, Codecs.create(s, topics)) as producer:
        huge = Result("too-large", 0, ResultKind.FINAL, "x" * (MAX_MESSAGE_BYTES + 1))
        with pytest.raises(RecordTooLarge) as caught:
            await (await producer.send_result(huge))
        assert isinstance(caught.value, KafkaRejected)
        await (await producer.send_result(Result("too-large", 1, ResultKind.FINAL, "fits")))  # still works
