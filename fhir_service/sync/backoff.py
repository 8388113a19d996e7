"""How long an outbox waits before trying a failed row again."""

from __future__ import annotations

import random
from datetime import timedelta

__all__ = ["jittered_backoff"]


def jittered_backoff(attempts: int, first: timedelta, cap: timedelta) -> timedelta:
    """The wait after ``attempts`` failed tries: doubling from ``first``, capped at ``cap``.

    A random half to all of it, so that rows that failed together (an outage) come back spread.
    """
    ceiling = min(cap, first * (1 << min(attempts - 1, 30)))
    jitter: float = random.uniform(0.5, 1.0)  # noqa: S311 - spreads retries, not a secret
    return ceiling * jitter
