"""Dependencies of the routes, named as types (``ContractsDep``) so signatures read as a spec.

A route takes one of them, its caller's service: the FHIR records (`RecordsDep`), the contracts
(`ContractsDep`, with their Idempotency-Keys), booking (`BookingDep`) or webhooks
(`WebhooksDep`), each bound here, once, to the caller's `Access` and audit record as the
security middleware left them. The service itself (`fhir_service.service.Service`) is built by
the app's lifespan.

They are coroutines although none awaits: FastAPI runs a plain function dependency in its thread
pool, a thread hop per dependency per request, which cost a contract read about half a
millisecond for nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from fhir_service.api.audit_trail import TRAIL_STATE, AuditTrail, change_by
from fhir_service.api.middleware.security import ACCESS_STATE, running_service
from fhir_service.metrics import Metrics
from fhir_service.records import (
    CallerBooking,
    CallerConsents,
    CallerContracts,
    CallerRecords,
    CallerWebhooks,
)
from fhir_service.security import Access
from fhir_service.service import Service
from fhir_service.settings import Settings

__all__ = [
    "AccessDep",
    "AuditTrailDep",
    "BookingDep",
    "ConsentsDep",
    "ContractsDep",
    "MetricsDep",
    "RecordsDep",
    "ServiceDep",
    "SettingsDep",
    "WebhooksDep",
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
MetricsDep = Annotated[Metrics, Depends(_app_state("metrics", Metrics))]


async def _service(request: Request) -> Service:
    """The running service, which the app's lifespan built."""
    return running_service(request.app)


ServiceDep = Annotated[Service, Depends(_service)]


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
    service: ServiceDep, access: AccessDep, trail: AuditTrailDep
) -> CallerRecords:
    """The FHIR records as this request's caller may see and change them."""
    return service.records(access, trail, change_by(access, trail))


async def _caller_contracts(
    service: ServiceDep, access: AccessDep, trail: AuditTrailDep
) -> CallerContracts:
    """The contracts of the JSON facade as this request's caller may see and change them,
    with their Idempotency-Keys."""
    return service.contracts(access, trail, lambda: change_by(access, trail), trail.caller.key)


async def _caller_booking(
    service: ServiceDep, access: AccessDep, trail: AuditTrailDep
) -> CallerBooking:
    """The booking facade as this request's caller may use it."""
    return service.booking(access, trail, lambda: change_by(access, trail))


async def _caller_webhooks(
    service: ServiceDep, access: AccessDep, trail: AuditTrailDep
) -> CallerWebhooks:
    """The webhooks this request's caller registered, and may register."""
    return service.webhooks(access, trail, trail.caller.key)


async def _caller_consents(
    service: ServiceDep, access: AccessDep, trail: AuditTrailDep
) -> CallerConsents:
    """The leaves this request's caller (a patient) granted their relatives."""
    return service.consents(access, trail)


RecordsDep = Annotated[CallerRecords, Depends(_caller_records)]
ContractsDep = Annotated[CallerContracts, Depends(_caller_contracts)]
BookingDep = Annotated[CallerBooking, Depends(_caller_booking)]
WebhooksDep = Annotated[CallerWebhooks, Depends(_caller_webhooks)]
ConsentsDep = Annotated[CallerConsents, Depends(_caller_consents)]
