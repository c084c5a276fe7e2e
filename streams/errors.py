"""What Kafka failing means to the rest of Babelstream (the ``KafkaError`` branch of ``schemas.errors``).

aiokafka raises some sixty error types; callers need to know only whether waiting can help. The shells in
``streams`` translate with :func:`kafka_error` where aiokafka's errors surface (a send, its delivery, a
metadata read), so nothing above ``streams`` names an aiokafka error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from aiokafka import errors as aiokafka_errors

from schemas.errors import BabelstreamError


class KafkaError(BabelstreamError):
    """Kafka failed us: :class:`KafkaUnavailable` or :class:`KafkaRejected`."""


class KafkaUnavailable(KafkaError):
    """The cluster cannot be reached, or did not answer or store in time: worth retrying later."""


class KafkaRejected(KafkaError):
    """The cluster refused this record or this client (authorization, an unknown topic, a bad request):
    sending the same again cannot help."""


class RecordTooLarge(KafkaRejected):
    """A record over the cap on one message (``MAX_MESSAGE_BYTES``)."""


_TOO_LARGE = (aiokafka_errors.MessageSizeTooLargeError, aiokafka_errors.RecordTooLargeError)
# not marked retriable by aiokafka, yet each means "no answer (yet)"
_AWAY = (aiokafka_errors.KafkaTimeoutError, aiokafka_errors.RequestTimedOutError, aiokafka_errors.ProducerClosed)


def kafka_error(e: BaseException) -> BaseException:
    """The named error for one of aiokafka's (anything else is returned as it is)."""
    if not isinstance(e, aiokafka_errors.KafkaError):
        return e
    detail = str(e) or type(e).__name__
    if isinstance(e, _TOO_LARGE):
        named: KafkaError = RecordTooLarge(detail)
    elif e.retriable or isinstance(e, _AWAY):
        named = KafkaUnavailable(detail)
    else:
        named = KafkaRejected(detail)
    named.__cause__ = e
    return named


def delivery(fut: asyncio.Future[object]) -> asyncio.Future[object]:
    """A delivery future whose failure is named (see :func:`kafka_error`); cancelling it cancels ``fut``."""
    out: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    def settle(f: asyncio.Future[object]) -> None:
        if out.done():
            return
        if f.cancelled():
            out.cancel()
        elif (e := f.exception()) is not None:
            out.set_exception(kafka_error(e))
        else:
            out.set_result(f.result())

    def forward_cancel(o: asyncio.Future[object]) -> None:
        if o.cancelled() and not fut.done():
            fut.cancel()

    fut.add_done_callback(settle)
    out.add_done_callback(forward_cancel)
    return out


P = ParamSpec("P")
T = TypeVar("T")


def named_kafka_errors(call: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Decorate a coroutine function so that aiokafka's errors leave it named."""

    @wraps(call)
    async def named(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await call(*args, **kwargs)
        except aiokafka_errors.KafkaError as e:
            raise kafka_error(e) from e

    return named
