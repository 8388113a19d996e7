"""HAPI's rest-hook Subscriptions that wake the change feed, and the token that guards the hook.

One Subscription per watched type, found again by its tag, so every start (of any instance)
converges on the same three. They carry no payload: HAPI only says "something changed" and the
feed reads what from ``_history``. HAPI sends the token as a bearer header; the hook endpoint
refuses calls without it. The token lives in the service DB, shared by all instances.
"""

from __future__ import annotations

import secrets

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.sync.changes import WATCHED_TYPES
from fhir_service.sync.tables import SyncState

__all__ = ["TAG_SUBSCRIPTION", "ensure_subscriptions", "hook_token"]

TAG_SUBSCRIPTION = f"{urls.BASE}/tag/change-subscription"

_TOKEN = "hapi_hook_token"  # noqa: S105 - the name of the row, not the token
_CRITERIA = {
    "CarePlan": f"CarePlan?identifier={urls.ID_CONTRACT}|",
    "CareTeam": f"CareTeam?identifier={urls.ID_CARE_TEAM}|",
    "Appointment": f"Appointment?identifier={urls.ID_AGREED_TIME}|",
}


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
    """Create or update the Subscriptions so HAPI calls ``endpoint`` on every watched change."""
    for resource_type in WATCHED_TYPES:
        subscription = {
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
        await hapi.conditional_update(f"_tag={TAG_SUBSCRIPTION}|{resource_type}", subscription)
