"""Start-up work that must succeed before the service is ready, retried until it does.

The service starts serving at once and reports "not ready" until each piece is done, so that a
HAPI or a database that comes up later (or comes back) needs no restart of ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["keep_trying"]

_log = logging.getLogger(__name__)


async def keep_trying(
    what: str,
    action: Callable[[], Awaitable[object]],
    done: asyncio.Event,
    *,
    retry_on: tuple[type[Exception], ...],
    first_wait: float = 1.0,
    max_wait: float = 30.0,
) -> None:
    """Run ``action`` until it succeeds, backing off between tries; then set ``done``."""
    wait = first_wait
    while True:
        try:
            await action()
        except retry_on as exc:
            _log.warning(
                f"{what} failed; retrying", extra={"reason": f"{type(exc).__name__}: {exc}"}
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, max_wait)
            continue
        _log.info(f"{what} done")
        done.set()
        return
