"""Tokens already verified, remembered for a short while so that a client's next request with
the same token skips the signature check.

A token is remembered under its SHA-256 until it expires, and never longer than ``ttl_seconds``:
a signing key withdrawn from the issuer's key set stops vouching for its tokens within that
time. Only tokens that passed every check are remembered; a refused one is checked afresh each
time. The memory is bounded; the least recently verified token goes first.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["VerifiedTokens"]

T = TypeVar("T")


class VerifiedTokens(Generic[T]):
    """What each recently verified token stands for, until it expires or ``ttl_seconds`` pass."""

    def __init__(
        self,
        *,
        ttl_seconds: float = 60.0,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl = ttl_seconds
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, T]] = OrderedDict()
        # Tokens are verified in worker threads and looked up on the event loop.
        self._lock = threading.Lock()

    def get(self, token: str) -> T | None:
        """What ``token`` stood for when it was verified, or None if it is not remembered."""
        key = _digest(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            until, value = entry
            if self._clock() >= until:
                del self._entries[key]
                return None
            return value

    def remember(self, token: str, value: T, expires_at: float) -> None:
        """``token`` was verified and stands for ``value`` until ``expires_at`` (epoch seconds)."""
        until = min(expires_at, self._clock() + self._ttl)
        key = _digest(token)
        with self._lock:
            self._entries[key] = (until, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
