"""How busy the service is: requests in flight, and for how long none has been.

Background writers (the audit trail's way into HAPI) ask it so that they write between bursts
of requests, not during them: HAPI serves both, and a batch written during a burst slows every
request of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Activity"]


class Activity:
    """Counts requests in flight; all calls come from the event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._in_flight = 0
        self._last = clock()

    def started(self) -> None:
        """A request came in."""
        self._in_flight += 1

    def finished(self) -> None:
        """A request was answered (or failed)."""
        self._in_flight -= 1
        self._last = self._clock()

    def quiet_for(self) -> float:
        """Seconds since the last request was answered; 0 while one is in flight."""
        return 0.0 if self._in_flight else self._clock() - self._last
