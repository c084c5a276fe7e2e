"""Short-lived Kafka clients (a backfill's reader, an admin lookup) that close however their caller ends.

aiokafka opens a bootstrap connection inside ``start()``; a task cancelled there (a client that hangs up
while its session's backfill starts) leaves that connection open ("Unclosed AIOKafkaConnection"), and one
cancelled while it reads must still stop its client. :func:`running` lets the start run on to its end in
its own task and then closes the client, and shields the close from a second cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

log = logging.getLogger(__name__)

_closing: set[asyncio.Future[None]] = set()  # closes that outlived their caller, kept until done


class Startable(Protocol):
    async def start(self) -> None: ...


@asynccontextmanager
async def running(client: Startable, close: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """``client`` started for the block, and ``close()`` d however the block ends (even cancelled)."""
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except BaseException:
        starting.add_done_callback(lambda _: _close_later(close))
        raise
    try:
        yield
    finally:
        closing = asyncio.ensure_future(close())
        _keep(closing)
        await asyncio.shield(closing)


def _close_later(close: Callable[[], Awaitable[None]]) -> None:
    _keep(asyncio.ensure_future(close()))


def _keep(fut: asyncio.Future[None]) -> None:
    _closing.add(fut)
    fut.add_done_callback(_closed)


def _closed(fut: asyncio.Future[None]) -> None:
    _closing.discard(fut)
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("closing a Kafka client failed: %r", fut.exception())
