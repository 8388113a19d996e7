"""One caller's Idempotency-Keys: a retried write gets the first answer, never a second write.

The key is claimed before anything reaches HAPI (`UnavailableError` if it cannot be: nothing
was written). Once claimed, the request's writes carry a tag of the key (the witness's
``write_key``), so that a retry of a request that never got its answer (HAPI did not answer,
or the instance running it died) finds what that request wrote. The answer itself is the web
layer's: it is kept as given and given again, whatever it says.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from fhir_service.audit.witness import Witness
from fhir_service.errors import OutcomeUnknownError, UnavailableError
from fhir_service.fhir import HapiRequestError
from fhir_service.servicedb.idempotency import IdempotencyStore, StoredResponse
from fhir_service.write_gate import before_write

__all__ = ["Replays", "StoredResponse"]

_log = logging.getLogger(__name__)


class Replays:
    """The Idempotency-Keys of one request's caller, scoped to them: another caller's key never
    replays this caller's answer."""

    def __init__(self, keys: IdempotencyStore, witness: Witness, caller: str, owner: str) -> None:
        self.keys = keys
        self.witness = witness
        self.caller = caller
        self.owner = owner
        self._claimed: tuple[str, str] | None = None

    async def claim(self, route: str, key: str, request: bytes) -> StoredResponse | None:
        """Claim ``key`` for this request to ``route``: None to go ahead, or the answer the
        first request with it got. Raises the store's refusals (the key was used with another
        request, or its request is still running)."""
        scope = f"{self.caller} {route}"
        await before_write()
        try:
            stored = await asyncio.to_thread(self.keys.begin, scope, key, request, self.owner)
        except SQLAlchemyError as exc:
            _log.exception("an Idempotency-Key could not be claimed")
            raise UnavailableError(
                "The Idempotency-Key could not be claimed, so the request was not run; nothing "
                "was written. Retry after the pause."
            ) from exc
        if isinstance(stored, StoredResponse):
            return stored
        self._claimed = (scope, key)
        self.witness.write_key = hashlib.sha256(f"{scope} {key}".encode()).hexdigest()[:40]
        return None

    async def answered(self, status: int, body: str) -> None:
        """Keep the answer the claimed request got; an answer of failure frees the key."""
        if status >= 500:
            await self._settle(self.keys.abandon)
        else:
            await self._settle(self.keys.complete, status, body)

    async def failed(self, exc: BaseException) -> None:
        """The claimed request ended in ``exc``, without an answer to keep.

        Only a refusal by HAPI or an unreachable HAPI says nothing was written; anything else
        (no answer in time, a bug, a dropped client) leaves the key for a retry to find out.
        """
        nothing_written = isinstance(exc, UnavailableError | HapiRequestError) and not (
            isinstance(exc, OutcomeUnknownError)
        )
        await self._settle(self.keys.abandon if nothing_written else self.keys.unknown)

    async def _settle(self, step: Callable[..., None], *args: object) -> None:
        # The answer goes out either way: a key that cannot be settled is taken over by a retry
        # once this instance is missed or the key has run longer than any request
        # (LONGEST_REQUEST), and the retry finds out what was written.
        if self._claimed is None:
            raise RuntimeError("settling an Idempotency-Key that was not claimed")
        try:
            await asyncio.to_thread(step, *self._claimed, *args)
        except SQLAlchemyError:
            _log.exception("an Idempotency-Key could not be settled")
