"""HAPI's rest-hook Subscriptions that wake the change feed (and, for the units' time types,
the time-type catalogue), and the token that guards the hook.

One Subscription per watched type, found again by its tag, so every start (of any instance)
converges on the same three; one that is already right is left alone. They carry no payload:
HAPI only says "something changed" and the feed reads what from ``_history``. HAPI sends the
token as a bearer header; the hook endpoint refuses calls without it. The token lives in the
service DB, shared by all instances.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_service.fhir import ConflictError, HapiClient
from fhir_service.mapping import urls
from fhir_service.servicedb.tables import SyncState
from fhir_service.sync.changes import WATCHED_TYPES

__all__ = ["TAG_SUBSCRIPTION", "ensure_subscriptions", "hook_token"]

TAG_SUBSCRIPTION = f"{urls.BASE}/tag/change-subscription"

_TOKEN = "hapi_hook_token"  # noqa: S105 - the name of the row, not the token
_CRITERIA = {
    "CarePlan": f"CarePlan?identifier={urls.ID_CONTRACT}|",
    "CareTeam": f"CareTeam?identifier={urls.ID_CARE_TEAM}|",
    "Appointment": f"Appointment?identifier={urls.ID_AGREED_TIME}|",
    # The units' time types: they wake the time-type catalogue, not the feed.
    "HealthcareService": f"HealthcareService?identifier={urls.ID_TIME_TYPE}|",
}
_TIME_TYPES_HOOK = "/time-types"
"""Below the hook's address: where HAPI says that a time type changed."""


def hook_token(engine: Engine) -> str:
    """The shared token HAPI presents to the hook; made by the first instance that asks."""
    with Session(engine) as session:
        row = session.get(SyncState, _TOKEN)
        if row is not None:
            return row.value
    try:
        with Session(engine) as session, session.begin():
            session.add(SyncState(name=_TOKEN, value=secrets.token_urlsafe(32)))
    except IntegrityError:
        pass  # another instance made it first; theirs is the one
    with Session(engine) as session:
        row = session.get(SyncState, _TOKEN)
        if row is None:
            raise RuntimeError("the hook token vanished right after it was made")
        return row.value


async def ensure_subscriptions(hapi: HapiClient, endpoint: str, token: str) -> None:
    """Make sure HAPI calls ``endpoint`` on every watched change, with one Subscription a type.

    A Subscription already as wanted is left alone. Any other is deleted and made anew rather
    than updated: HAPI 8.8 re-uses the delivery channel of an updated active Subscription, whose
    listener can be closed by then, and its deliveries then fail (``HAPI-2659``) for good.
    """
    for resource_type in (*WATCHED_TYPES, "HealthcareService"):
        at = endpoint + (_TIME_TYPES_HOOK if resource_type == "HealthcareService" else "")
        wanted = _subscription(resource_type, at, token)
        tag = f"{TAG_SUBSCRIPTION}|{resource_type}"
        found = (await hapi.search("Subscription", [("_tag", tag)])).matches()
        if len(found) == 1 and _as_wanted(found[0], wanted):
            continue
        for stale in found:
            await hapi.delete("Subscription", str(stale["id"]))
        # ConflictError: another instance made it at the same moment, and one is enough.
        with contextlib.suppress(ConflictError):
            await hapi.create(wanted, if_none_exist=f"_tag={tag}")


def _subscription(resource_type: str, endpoint: str, token: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "meta": {"tag": [{"system": TAG_SUBSCRIPTION, "code": resource_type}]},
        "status": "requested",
        "reason": f"Patient contracts service: {resource_type} changes wake its change feed",
        "criteria": _CRITERIA[resource_type],
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "header": [f"Authorization: Bearer {token}"],
        },
    }


def _as_wanted(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return (
        found.get("status") in ("requested", "active")
        and found.get("criteria") == wanted["criteria"]
        and found.get("channel") == wanted["channel"]
    )
