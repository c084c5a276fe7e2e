"""How tests wait: poll until something holds, or fail after a deadline that says what never happened.

Every deadline is multiplied by ``TEST_TIME_SCALE`` (an environment variable, 1 by default): on a slower
machine set it to 2 or 3 instead of editing timeouts. A deadline bounds a test against hanging; it is
never a performance assertion (those are benchmarks, in ``bench/``)."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIME_SCALE = float(os.environ.get("TEST_TIME_SCALE", "1"))


def scaled(timeout_s: float) -> float:
    return timeout_s * TIME_SCALE


def _explain(what: str | Callable[[], str], timeout_s: float) -> str:
    return f"after {scaled(timeout_s):g} s: {what() if callable(what) else what}"


def wait_until_sync(
    check: Callable[[], T],
    timeout_s: float,
    what: str | Callable[[], str],
    every_s: float = 0.2,
    error: Callable[[str], Exception] = TimeoutError,
) -> T:
    """Call ``check`` every ``every_s`` until it returns something true, and return that; past
    ``timeout_s`` (scaled) raise ``error`` naming ``what`` (a callable is asked then: a log's tail, say).
    ``check`` may itself raise to end the wait at once (a process that exited)."""
    deadline = time.monotonic() + scaled(timeout_s)
    while not (value := check()):
        if time.monotonic() > deadline:
            raise error(_explain(what, timeout_s))
        time.sleep(every_s)
    return value


async def wait_until(
    check: Callable[[], T | Awaitable[T]],
    timeout_s: float,
    what: str | Callable[[], str],
    every_s: float = 0.05,
) -> T:
    """The same in a coroutine; ``check`` may be a plain function or a coroutine function."""
    deadline = time.monotonic() + scaled(timeout_s)
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimeoutError(_explain(what, timeout_s))
        await asyncio.sleep(every_s)
