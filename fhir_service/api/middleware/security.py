"""The security layer every request passes: token, access decision and audit record, in one place.

For each request the middleware finds the route it is for and that route's rule
(``access_rules.RULES``). Public routes pass untouched. For every other route it

1. checks the bearer token (401 with ``WWW-Authenticate`` if missing or refused),
2. decides access from the token's scopes (403 if refused), and hands the routes an `Access`
   whose compartment they apply to what they read and write,
3. records the request in the audit outbox before the answer leaves, allowed or refused. If the
   record cannot be kept, the answer is replaced by a 503: an access nobody can account for is
   not served, and a refusal nobody can account for is not told either. Every request is
   recorded while it runs, its outcome unknown: a read alongside its call to HAPI; a request
   that may write while it parses and checks what it was sent, and each of its writes waits
   for the record (``fhir_service.write_gate``). If that record cannot be kept nothing is
   written (503), and a write that was made is on record whatever happens next. The outcome is
   added once the answer has left.

A route with no rule is refused (403) and logged as a bug: deny by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from fastapi import FastAPI
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_service.api.access_rules import Protected, Public, rule_for
from fhir_service.api.audit_trail import TRAIL_STATE, AuditTrail
from fhir_service.api.problems import problem_response
from fhir_service.audit import Caller
from fhir_service.contract import Identifier
from fhir_service.errors import UnavailableError, UpstreamError
from fhir_service.logs import request_id_var
from fhir_service.mapping import system_for
from fhir_service.security import (
    Access,
    AccessDeniedError,
    Denial,
    InvalidTokenError,
    Principal,
    SigningKeysUnavailableError,
    TokenValidator,
    claimed_identifier,
    decide,
)
from fhir_service.service import Service
from fhir_service.write_gate import NOT_RECORDED, gated

__all__ = ["ACCESS_STATE", "SecurityMiddleware", "running_service"]

_log = logging.getLogger(__name__)

ACCESS_STATE = "access"
_REALM = 'Bearer realm="patient-contracts"'
# Requests that cannot write; every other method's writes wait for its record.
_READS = frozenset({"GET", "HEAD"})


class _RefusedError(Exception):
    def __init__(self, response: Response, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


class SecurityMiddleware:
    """Authenticates, authorizes and audits every request to a protected route."""

    def __init__(self, app: ASGIApp, validator: TokenValidator) -> None:
        self.app = app
        self.validator = validator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fastapi: FastAPI = scope["app"]
        route = _route_of(fastapi, scope)
        rule = None if route is None else rule_for(route.name or "")
        if route is None or isinstance(rule, Public):
            # Unmatched paths get the router's 404/405: no route, no data.
            await self.app(scope, receive, send)
            return
        if rule is None:
            _log.error("route has no access rule; refused", extra={"route": _path_of(route)})
            await _forbidden(Denial.INSUFFICIENT_SCOPE.value)(scope, receive, send)
            return
        trail = AuditTrail(
            rule=rule,
            request_id=request_id_var.get() or "-",
            method=scope["method"],
            route=_path_of(route),
            caller=Caller(address=_address(scope)),
            query=scope.get("query_string", b"").decode("latin-1") or None,
        )
        state: dict[str, Any] = scope.setdefault("state", {})
        state[TRAIL_STATE] = trail
        try:
            state[ACCESS_STATE] = await self._access(fastapi, scope, rule, trail)
        except _RefusedError as refusal:
            trail.refused(refusal.reason)
            kept = await self._keep(fastapi, trail, refusal.response.status_code)
            await (refusal.response if kept else _unaccountable())(scope, receive, send)
            return
        # Recorded while it runs, not before or after: its answer leaves once the record is
        # kept, its writes wait for it, and its outcome is added once the answer has left (a
        # record whose outcome never comes, the process gone, goes to HAPI saying it is unknown).
        opening = asyncio.create_task(self._open(fastapi, trail))
        answered = _AuditedSend(
            lambda status: self._keep(fastapi, trail, status, opened=True),
            scope,
            receive,
            send,
            opening=opening,
            instead=_unaccountable if scope["method"] in _READS else _not_run,
        )
        try:
            with gated(opening):
                # Let the record's first step run now, which hands it to the service DB's
                # thread: this request runs on until it first waits, which for a create is
                # after parsing and mapping it, and its record is kept meanwhile rather than
                # only once its write waits for it.
                await asyncio.sleep(0)
                await self.app(scope, receive, answered)
        except Exception:
            # A bug: the outer middleware answers 500; the trail still says it happened.
            if not answered.started:
                await self._keep(fastapi, trail, 500, opened=await opening)
            raise
        finally:
            if not opening.done():
                # Never answered (the client went away): the record is kept all the same.
                await asyncio.shield(opening)
            # An answer cut off while it went out (the client went away) still has an outcome.
            await asyncio.shield(answered.outcome())

    async def _access(
        self, fastapi: FastAPI, scope: Scope, rule: Protected, trail: AuditTrail
    ) -> Access:
        token = _bearer(scope)
        if token is None:
            raise _RefusedError(_unauthorized(None), "no bearer token")
        # A client's next request with the same token skips the signature check and the thread.
        principal = self.validator.remembered(token)
        try:
            if principal is None:
                principal = await asyncio.to_thread(self.validator.validate, token)
        except InvalidTokenError as exc:
            raise _RefusedError(_unauthorized(exc.reason.value), f"token refused: {exc}") from None
        except SigningKeysUnavailableError:
            _log.warning("signing keys unavailable; tokens cannot be checked")
            response = _unavailable("Tokens cannot be checked right now.")
            raise _RefusedError(response, "signing keys unavailable") from None
        try:
            patient = await self._patient_of(fastapi, principal)
            trail.caller = self._caller(principal, patient, trail.caller.address)
            access = decide(principal, rule.requirement, patient)
            return await self._with_leave(fastapi, access)
        except AccessDeniedError as exc:
            raise _RefusedError(_forbidden(exc.denial.value), f"denied: {exc}") from None
        except (UnavailableError, UpstreamError):
            response = _unavailable("The token's patient cannot be looked up right now.")
            raise _RefusedError(response, "patient lookup failed: FHIR store unavailable") from None

    async def _with_leave(self, fastapi: FastAPI, access: Access) -> Access:
        """A relative's access (their token's ``fhirUser`` names a RelatedPerson) holds only
        under a leave of the patient's in force now, looked up on every request."""
        related_person = _related_person(access.principal.fhir_user)
        if related_person is None:
            return access
        patient = access.compartment.patient
        leave = None
        if access.context == "patient" and patient is not None:
            leave = await running_service(fastapi).leave_of(patient, related_person)
        if leave is None:
            raise AccessDeniedError(Denial.NO_LEAVE)
        return replace(access, leave=leave)

    def _caller(
        self, principal: Principal, patient: Identifier | None, address: str | None
    ) -> Caller:
        organization = None
        if principal.organization is not None:
            unit = claimed_identifier(principal.organization, patient=False)
            organization = None if unit is None else (system_for(unit.kind), unit.value)
        return Caller(
            subject=principal.subject,
            issuer=self.validator.issuer,
            client_id=principal.client_id,
            organization=organization,
            patient=None if patient is None else (system_for(patient.kind), patient.value),
            address=address,
        )

    async def _patient_of(self, fastapi: FastAPI, principal: Principal) -> Identifier | None:
        claim = principal.patient
        if claim is None:
            return None
        identifier = claimed_identifier(claim, patient=True)
        if identifier is not None:
            return identifier
        # SMART's launch context names a FHIR Patient id: its national identifier is the
        # compartment, since contracts find their patient by identifier.
        found = await running_service(fastapi).patient_of(claim)
        if found is None:
            raise AccessDeniedError(Denial.BAD_CLAIM)
        return found

    async def _open(self, fastapi: FastAPI, trail: AuditTrail) -> bool:
        try:
            await running_service(fastapi).open_access(trail.opened())
        except Exception:
            _log.exception("audit record could not be opened; the request is not run")
            return False
        return True

    async def _keep(
        self, fastapi: FastAPI, trail: AuditTrail, status: int, *, opened: bool = False
    ) -> bool:
        try:
            await running_service(fastapi).keep_access(trail.record(status), opened=opened)
        except Exception:
            _log.exception(
                "audit record could not be completed; it goes out saying the outcome is unknown"
                if opened
                else "audit record could not be kept"
            )
            return False
        return True


def _related_person(fhir_user: str | None) -> str | None:
    """``RelatedPerson/<id>`` when SMART's ``fhirUser`` names one, relative or absolute (as
    identity providers write it: ``https://.../fhir/RelatedPerson/7``); None otherwise."""
    parts = (fhir_user or "").split("?")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "RelatedPerson" and parts[-1]:
        return f"RelatedPerson/{parts[-1]}"
    return None


class _AuditedSend:
    """Passes the answer on only once its audit record is kept.

    The record is opened while the request runs (``opening``): its answer waits for that, and
    is the 503 ``instead`` if it could not be kept. The outcome is kept once the answer has
    left: the record that the access happened is already kept, and should the outcome not be
    (the process gone), the record goes to HAPI saying the outcome is unknown, which for a
    write says that it may have happened.
    """

    def __init__(
        self,
        keep: Callable[[int], Awaitable[bool]],
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        opening: asyncio.Task[bool],
        instead: Callable[[], Response],
    ) -> None:
        self.keep = keep
        self.scope = scope
        self.receive = receive
        self.send = send
        self.opening = opening
        self.instead = instead
        self.started = False
        self.failed = False
        self.kept = False
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            if not await self.opening:
                self.failed = True
                await self.instead()(self.scope, self.receive, self.send)
                return
        elif self.failed:
            return
        await self.send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await self.outcome()

    async def outcome(self) -> None:
        """Keep the outcome of the answer given, once (a record opened and never completed
        would wait for its instance to die before it went out)."""
        if self.started and not self.failed and not self.kept:
            self.kept = True
            await self.keep(self.status)


def _route_of(fastapi: FastAPI, scope: Scope) -> RouteContext | None:
    # The same matching the router does next, over the routes as included (with prefixes).
    for route in iter_route_contexts(fastapi.routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def _path_of(route: RouteContext) -> str:
    return route.path or "<unknown>"


def _bearer(scope: Scope) -> str | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def _address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _unauthorized(reason: str | None) -> Response:
    challenge = _REALM
    if reason is not None:
        challenge += f', error="invalid_token", error_description="{reason}"'
    detail = reason or "send a bearer token in the Authorization header"
    return problem_response(401, "Unauthorized", detail, headers={"WWW-Authenticate": challenge})


def _forbidden(reason: str) -> Response:
    challenge = f'{_REALM}, error="insufficient_scope", error_description="{reason}"'
    return problem_response(403, "Forbidden", reason, headers={"WWW-Authenticate": challenge})


def _unaccountable() -> Response:
    return _unavailable(
        "The access could not be recorded in the audit trail, so it is not answered."
    )


def _not_run() -> Response:
    return _unavailable(NOT_RECORDED)


def _unavailable(detail: str) -> Response:
    return problem_response(
        503,
        "Service Unavailable",
        f"{detail} Retry after the pause.",
        headers={"Retry-After": "5"},
    )


def running_service(fastapi: FastAPI) -> Service:
    """The running service, which the app's lifespan built."""
    service = fastapi.state.service
    if not isinstance(service, Service):
        raise TypeError(f"app.state.service is {type(service).__name__}, not Service")
    return service
