"""Dependencies of the routes, named as types (``HapiClientDep``) so signatures read as a spec.

They are coroutines although none awaits: FastAPI runs a plain function dependency in its thread
pool, a thread hop per dependency per request, which cost a contract read about half a
millisecond for nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine

from fhir_service.api.audit_trail import AuditTrail, change_by
from fhir_service.api.middleware.security import ACCESS_STATE, TRAIL_STATE
from fhir_service.fhir import HapiClient
from fhir_service.metrics import Metrics
from fhir_service.records import CallerRecords
from fhir_service.security import Access
from fhir_service.servicedb import ThisInstance
from fhir_service.settings import Settings
from fhir_service.store import ContractStore
from fhir_service.sync import Notifications

__all__ = [
    "AccessDep",
    "AuditTrailDep",
    "ConformanceLoadedDep",
    "EngineDep",
    "HapiClientDep",
    "InstanceDep",
    "MetricsDep",
    "NotificationsDep",
    "RecordsDep",
    "SchemaReadyDep",
    "SettingsDep",
    "StoreDep",
]

T = TypeVar("T")


def _app_state(attribute: str, kind: type[T]) -> Callable[[Request], Coroutine[None, None, T]]:
    """A dependency returning ``app.state.<attribute>``, set up by ``create_app`` or lifespan."""

    async def dependency(request: Request) -> T:
        value = getattr(request.app.state, attribute)
        if not isinstance(value, kind):
            raise TypeError(f"app.state.{attribute} is {type(value).__name__}, not {kind.__name__}")
        return value

    return dependency


SettingsDep = Annotated[Settings, Depends(_app_state("settings", Settings))]
HapiClientDep = Annotated[HapiClient, Depends(_app_state("hapi", HapiClient))]
MetricsDep = Annotated[Metrics, Depends(_app_state("metrics", Metrics))]
EngineDep = Annotated[Engine, Depends(_app_state("engine", Engine))]
SchemaReadyDep = Annotated[asyncio.Event, Depends(_app_state("schema_ready", asyncio.Event))]
ConformanceLoadedDep = Annotated[
    asyncio.Event, Depends(_app_state("conformance_loaded", asyncio.Event))
]
NotificationsDep = Annotated[Notifications, Depends(_app_state("notifications", Notifications))]
StoreDep = Annotated[ContractStore, Depends(_app_state("store", ContractStore))]
InstanceDep = Annotated[ThisInstance, Depends(_app_state("instance", ThisInstance))]


def _request_state(name: str, kind: type[T]) -> Callable[[Request], Coroutine[None, None, T]]:
    """A dependency returning what the security middleware left for this request."""

    async def dependency(request: Request) -> T:
        value = getattr(request.state, name, None)
        if not isinstance(value, kind):
            # Only a route without an access rule gets here: the middleware refuses those.
            raise TypeError(f"no {kind.__name__} for this request; is the route in RULES?")
        return value

    return dependency


AccessDep = Annotated[Access, Depends(_request_state(ACCESS_STATE, Access))]
AuditTrailDep = Annotated[AuditTrail, Depends(_request_state(TRAIL_STATE, AuditTrail))]


async def _caller_records(
    request: Request, access: AccessDep, trail: AuditTrailDep
) -> CallerRecords:
    """The FHIR records as this request's caller may see and change them: their walls and
    audit record bound once, for every route of the FHIR endpoint."""
    state = request.app.state
    return CallerRecords(access, trail, change_by(access, trail), state.hapi, state.store)


RecordsDep = Annotated[CallerRecords, Depends(_caller_records)]
