"""The endpoints HAPI's rest-hook Subscriptions call: they only wake the change feed, or the
time-type catalogue.

HAPI sends no payload (see ``sync/subscriptions.py``), so nothing here is trusted as data; the
feed reads what changed from HAPI itself. The bearer token keeps strangers from making it read.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Header, Response, status
from fastapi.responses import JSONResponse

from fhir_service.api.deps import NotificationsDep
from fhir_service.api.problems import problem_response

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.post("/hooks/hapi")
async def hapi_changed(
    notifications: NotificationsDep,
    authorization: str = Header(default=""),
) -> Response:
    """HAPI saw a change to a watched resource: read the history now."""
    return _wake(notifications.feed_wake, notifications.hook_token, authorization)


@router.post("/hooks/hapi/time-types")
async def time_types_changed(
    notifications: NotificationsDep,
    authorization: str = Header(default=""),
) -> Response:
    """HAPI saw a change to a care unit's time type: read the time types again now."""
    return _wake(notifications.time_types_changed, notifications.hook_token, authorization)


def _wake(event: asyncio.Event, token: str | None, authorization: str) -> Response:
    """Set ``event`` when the call is HAPI's (it bears the hook token)."""
    scheme, _, presented = authorization.partition(" ")
    if (
        token is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(presented.encode(), token.encode())
    ):
        return _unauthorized()
    event.set()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _unauthorized() -> JSONResponse:
    return problem_response(
        401,
        "Unauthorized",
        "this endpoint is for the HAPI FHIR server's subscriptions",
        headers={"WWW-Authenticate": "Bearer"},
    )
