"""The gate a request's writes wait at: its audit record, opened while the request runs.

A request that may write is recorded before anything it writes (``api.middleware.security``),
but need not wait for that record before it parses, checks and maps what it was sent: the
record is opened alongside, and each write (to HAPI, or to the service DB) first waits here.
Should the record not be kept, no write is made: the request ends in `NotRecordedError`, and
its answer is a 503 saying nothing was written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from fhir_service.errors import UnavailableError

__all__ = ["NOT_RECORDED", "NotRecordedError", "before_write", "gated"]

NOT_RECORDED = (
    "The access could not be recorded in the audit trail, so it was not made; nothing was written."
)
"""What a request whose record could not be kept is told, whichever layer stopped it."""

_opening: ContextVar[asyncio.Future[bool] | None] = ContextVar("audit_opening", default=None)


class NotRecordedError(UnavailableError):
    """The request's audit record could not be kept, so it wrote nothing."""

    def __init__(self) -> None:
        super().__init__(f"{NOT_RECORDED} Retry after the pause.")


@contextmanager
def gated(opening: asyncio.Future[bool]) -> Iterator[None]:
    """Make the writes of the code run within wait for ``opening``: True once the record is
    kept, False when it could not be."""
    token = _opening.set(opening)
    try:
        yield
    finally:
        _opening.reset(token)


async def before_write() -> None:
    """Wait until the running request's audit record is kept; raise `NotRecordedError` when it
    could not be. Outside a request (background work) there is nothing to wait for."""
    opening = _opening.get()
    # Shielded: one write given up on must not cancel the record the others wait for.
    if opening is not None and not await asyncio.shield(opening):
        raise NotRecordedError
