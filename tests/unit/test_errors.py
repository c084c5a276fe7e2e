"""One root for every error raised on purpose, and aiokafka's errors named for what they mean."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import re

import pytest
from aiokafka import errors as aiokafka_errors

import schemas.errors
from schemas.errors import BabelstreamError
from streams.errors import KafkaError, KafkaRejected, KafkaUnavailable, RecordTooLarge, delivery, kafka_error


def _own_error_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in ("schemas", "core", "streams", "gateway"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            module = importlib.import_module(info.name)
            for name, obj in inspect.getmembers(module, inspect.isclass):
                if obj.__module__ == info.name and issubclass(obj, BaseException):
                    found[name] = obj
    return found


def test_every_error_of_ours_has_the_one_root_and_is_in_the_drawn_tree() -> None:
    tree = {"BabelstreamError", *re.findall(r"[├└]── (\w+)", schemas.errors.__doc__ or "")}
    own = _own_error_classes()
    assert own, "no error classes found"
    assert {n for n, c in own.items() if not issubclass(c, BabelstreamError)} == set()
    assert set(own) - tree == set(), "errors missing from the tree in schemas/errors.py"
    assert tree - set(own) == set(), "the tree names errors that do not exist"


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (aiokafka_errors.MessageSizeTooLargeError(), RecordTooLarge),
        (aiokafka_errors.RecordTooLargeError("5 MiB"), RecordTooLarge),
        (aiokafka_errors.KafkaConnectionError("Unable to bootstrap from [...]"), KafkaUnavailable),
        (aiokafka_errors.KafkaTimeoutError(), KafkaUnavailable),
        (aiokafka_errors.RequestTimedOutError(), KafkaUnavailable),
        (aiokafka_errors.NotLeaderForPartitionError(), KafkaUnavailable),
        (aiokafka_errors.TopicAuthorizationFailedError(), KafkaRejected),
        (aiokafka_errors.UnsupportedVersionError(), KafkaRejected),
    ],
)
def test_aiokafka_errors_are_named_for_whether_waiting_helps(raw: Exception, named: type[KafkaError]) -> None:
    e = kafka_error(raw)
    assert type(e) is named and e.__cause__ is raw
    assert str(e)  # never an empty message, even where aiokafka's is


def test_other_errors_pass_through_unchanged() -> None:
    boom = ValueError("not Kafka")
    assert kafka_error(boom) is boom


async def test_a_delivery_fails_named_and_a_cancel_reaches_the_producer() -> None:
    loop = asyncio.get_running_loop()
    raw = loop.create_future()
    named = delivery(raw)
    raw.set_exception(aiokafka_errors.MessageSizeTooLargeError())
    with pytest.raises(RecordTooLarge):
        await named
    ok = loop.create_future()
    done = delivery(ok)
    ok.set_result("metadata")
    assert await done == "metadata"
    pending = loop.create_future()
    delivery(pending).cancel()
    await asyncio.sleep(0)
    assert pending.cancelled()  # the record is dropped from the producer's batch, as before
