"""Waiting for an event, at most so long, in the loops that run in the background.

Python 3.11's ``asyncio.wait_for`` loses a cancellation that comes just as what it waits for
completes: the loop that called it goes on, and the service does not stop. A background loop
that is woken often (a delivery that ends, an access recorded) meets that moment sooner or
later; ``asyncio.timeout`` passes the cancellation on.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["woken"]


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set, at most ``seconds``; whether it was set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
