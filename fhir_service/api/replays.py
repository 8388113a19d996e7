"""``Idempotency-Key`` on the JSON facade's writes: a retry with the same key and body gets the
first answer, never a second write; the same key with another body is refused (422).

The answer is the one thing kept, so this is the web layer's part: the caller's keys
(`fhir_service.records.Replays`) claim the key before the write and keep the answer after it,
whatever it says. A refusal that would be the same again is kept; a failure a retry may get
past (HAPI unavailable, the outcome unknown) frees the key or leaves it for the retry to find
out what was written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from fhir_service.api.problems import PROBLEM_JSON, refused
from fhir_service.errors import ServiceError
from fhir_service.records import Replays

__all__ = ["REPLAYED", "keyed"]

REPLAYED = "Idempotency-Replayed"
"""The header saying an answer is the one an earlier request with the key got."""


async def keyed(
    request: Request,
    replays: Replays,
    key: str | None,
    write: Callable[[], Awaitable[Response]],
    replayed: Callable[[int, object], Response],
) -> Response:
    """``write``'s answer, once per ``key``: the first answer is given again to every retry
    (built by ``replayed`` from its status and JSON body when it was not a problem)."""
    if key is None:
        return await write()
    stored = await replays.claim(f"{request.method} {request.url.path}", key, await request.body())
    if stored is not None:
        content = json.loads(stored.body)
        again = (
            replayed(stored.status, content)
            if stored.status < 300
            else JSONResponse(content, stored.status, media_type=PROBLEM_JSON)
        )
        again.headers[REPLAYED] = "true"
        return again
    try:
        response = await write()
    except ServiceError as exc:
        if not exc.final:
            await replays.failed(exc)
            raise
        response = refused(request, exc)
    except BaseException as exc:
        await replays.failed(exc)
        raise
    await replays.answered(response.status_code, bytes(response.body).decode("utf-8"))
    return response
