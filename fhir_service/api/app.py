"""The FastAPI application: lifespan (HAPI client, service DB, profiles), middleware, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_service import __version__, servicedb
from fhir_service.api import (
    booking,
    contracts,
    hapi_callback,
    health,
    labels_routes,
    patients,
    smart,
    webhooks,
)
from fhir_service.api.activity import Activity
from fhir_service.api.fhir import conformance as fhir_conformance
from fhir_service.api.fhir import routes as fhir_routes
from fhir_service.api.fhir import scheduling as fhir_scheduling
from fhir_service.api.fhir import transactions as fhir_transactions
from fhir_service.api.fhir import writes as fhir_writes
from fhir_service.api.fhir.bodies import json_refusal as fhir_json_refusal
from fhir_service.api.json_bodies import StrictJsonMiddleware
from fhir_service.api.middleware.body_limit import BodyLimitMiddleware
from fhir_service.api.middleware.observability import RequestContextMiddleware
from fhir_service.api.middleware.operation_outcomes import OperationOutcomeMiddleware
from fhir_service.api.middleware.security import SecurityMiddleware
from fhir_service.api.openapi import install as install_openapi
from fhir_service.api.problems import problem_response
from fhir_service.audit import AuditOutbox, AuditWriter
from fhir_service.contract import described, json_path
from fhir_service.fhir import (
    ConflictError,
    HapiClient,
    HapiOutcomeUnknownError,
    HapiUnavailableError,
    ServerError,
)
from fhir_service.mapping import UnreadableContractError
from fhir_service.metrics import Metrics
from fhir_service.security import TokenValidator
from fhir_service.servicedb import ThisInstance
from fhir_service.settings import Settings
from fhir_service.store import ContractStore
from fhir_service.sync import (
    Notifications,
    TargetPolicy,
    conformance,
    housekeeping,
    keep_trying,
    webhook_client,
)

__all__ = ["create_app"]

_log = logging.getLogger(__name__)
_RETRY_AFTER_SECONDS = 5


def create_app(settings: Settings) -> FastAPI:
    """Build the app for ``settings``; ``settings.hapi_url`` must be set by now.

    The embedded default (no HAPI URL) is resolved by the command line before this is called.
    """
    if settings.hapi_url is None:
        raise ValueError("create_app needs settings.hapi_url; the CLI fills it for embedded HAPI")
    hapi_url = str(settings.hapi_url)
    metrics = Metrics()
    # Audit writes to HAPI wait for a lull in requests, which the outermost middleware sees.
    activity = Activity()
    # Built here, not in the lifespan: incomplete auth settings stop the start, with the reason.
    validator = TokenValidator.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hapi = HapiClient(hapi_url, metrics, timeout=settings.hapi_timeout_seconds)
        app.state.engine = servicedb.make_engine(settings.resolved_database_url)
        app.state.instance = ThisInstance(app.state.engine)
        app.state.conformance_loaded = asyncio.Event()
        app.state.schema_ready = asyncio.Event()
        app.state.audit_wake = asyncio.Event()
        app.state.store = ContractStore(app.state.hapi, settings.narrative_language)
        # Webhook receivers are strangers: no redirects followed, no shared pool with HAPI, and
        # connections only to addresses the target policy admits.
        webhook_http = webhook_client(
            allow_private_networks=settings.webhook_allow_private_networks
        )
        app.state.notifications = Notifications(
            app.state.hapi,
            app.state.engine,
            app.state.store,
            webhook_http,
            policy=TargetPolicy(
                allowed_hosts=settings.webhook_hosts,
                allow_http=settings.webhook_allow_http,
                allow_private_networks=settings.webhook_allow_private_networks,
            ),
            hook_url=settings.resolved_hapi_hook_url,
            feed_interval_seconds=settings.change_feed_interval_seconds,
        )
        audit_outbox = AuditOutbox(app.state.engine)
        audit_writer = AuditWriter(audit_outbox, app.state.hapi)
        metrics.watch_backlogs(audit_outbox.pending, app.state.notifications.outbox.pending)
        background = [
            asyncio.create_task(
                _after(
                    app.state.schema_ready,
                    lambda: audit_writer.run_forever(
                        app.state.audit_wake, quiet=activity.quiet_for
                    ),
                )
            ),
            asyncio.create_task(app.state.notifications.run(app.state.schema_ready)),
            asyncio.create_task(
                housekeeping.tidy_forever(app.state.engine, app.state.schema_ready)
            ),
            asyncio.create_task(app.state.instance.beat_forever(app.state.schema_ready)),
            asyncio.create_task(
                conformance.load_until_done(app.state.hapi, app.state.conformance_loaded)
            ),
            asyncio.create_task(
                keep_trying(
                    "migrating the service DB",
                    lambda: asyncio.to_thread(servicedb.migrate, app.state.engine),
                    app.state.schema_ready,
                    retry_on=(SQLAlchemyError,),
                )
            ),
        ]
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await webhook_http.aclose()
            await app.state.hapi.aclose()
            app.state.engine.dispose()

    app = FastAPI(
        title="Patient contracts FHIR service",
        version=__version__,
        summary="Patient contracts (patientkontrakt, individuell plan) on FHIR R4.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    # Added inner first: a request meets the FHIR error form, the request context, then the
    # body limit, then the security layer (token, access decision, audit record), the routes.
    # Innermost, so its refusals are audited: a JSON body repeating a key or holding NaN.
    app.add_middleware(StrictJsonMiddleware, facades={"/fhir": fhir_json_refusal})
    app.add_middleware(SecurityMiddleware, validator=validator)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, activity=activity)
    # Outermost: every refusal below /fhir, from whichever layer, leaves as an OperationOutcome.
    app.add_middleware(OperationOutcomeMiddleware)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(HapiUnavailableError, _hapi_unavailable)
    app.add_exception_handler(HapiOutcomeUnknownError, _write_outcome_unknown)
    app.add_exception_handler(ConflictError, _lost_race)
    app.add_exception_handler(ServerError, _hapi_unavailable)
    app.add_exception_handler(UnreadableContractError, _unreadable_contract)
    app.include_router(health.router)
    app.include_router(contracts.router)
    app.include_router(patients.router)
    app.include_router(labels_routes.router)
    app.include_router(booking.router)
    # Before the read routes, which would take "$find" or ".well-known" for an id.
    app.include_router(smart.router)
    app.include_router(fhir_conformance.router)
    app.include_router(fhir_scheduling.router)
    app.include_router(fhir_routes.router)
    app.include_router(fhir_transactions.router)
    app.include_router(fhir_writes.router)
    app.include_router(webhooks.router)
    app.include_router(hapi_callback.router)
    install_openapi(app)
    return app


async def _after(ready: asyncio.Event, work: Callable[[], Awaitable[None]]) -> None:
    await ready.wait()
    await work()


async def _http_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = {404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}.get(
        exc.status_code, "HTTP error"
    )
    return problem_response(
        exc.status_code, title, str(exc.detail), headers=getattr(exc, "headers", None)
    )


async def _validation_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": _location(error["loc"]), "message": described(error)} for error in exc.errors()
    ]
    return problem_response(
        422, "Invalid request", "The request does not match the API.", errors=errors
    )


def _location(loc: tuple[int | str, ...]) -> str:
    """Where in the request: ``$.goals[0].description`` in the body (as the README and the
    command line say it), ``query.count`` or ``header.if-match`` elsewhere."""
    where, *rest = loc or ("body",)
    if where == "body":
        return json_path(rest)
    return ".".join(str(part) for part in loc)


async def _hapi_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Every HAPI write is one transaction, and this error means it was refused or never sent
    # (a write HAPI may have made is the outcome-unknown error below), so nothing was written;
    # the client may retry the same request (with its Idempotency-Key) after the pause.
    _log.warning("HAPI unavailable", extra={"reason": str(exc), "path": request.url.path})
    written = "" if request.method in ("GET", "HEAD") else "; nothing was written"
    return problem_response(
        503,
        "Service Unavailable",
        f"The FHIR store is unavailable{written}. Retry after the pause.",
        headers={"Retry-After": str(_RETRY_AFTER_SECONDS)},
    )


async def _lost_race(request: Request, exc: Exception) -> JSONResponse:
    # The store tries a write that lost a race over a shared record again; this one lost every
    # time. HAPI refused the transaction whole.
    _log.warning("HAPI write lost its races", extra={"reason": str(exc)})
    return problem_response(
        409,
        "Conflict",
        "Concurrent writes to records this one shares won every try; nothing was written. "
        "Retry after the pause.",
        headers={"Retry-After": "1"},
    )


async def _write_outcome_unknown(request: Request, exc: Exception) -> JSONResponse:
    # HAPI got the write, or may have, and did not answer in time: it may still make it.
    _log.warning("HAPI write outcome unknown", extra={"reason": str(exc)})
    return problem_response(
        504,
        "Gateway Timeout",
        "The FHIR store did not answer in time: the outcome of this write is unknown. Retry "
        "with the same Idempotency-Key to find out what happened (without one, read the "
        "contract before writing again).",
        headers={"Retry-After": str(_RETRY_AFTER_SECONDS)},
    )


async def _unreadable_contract(request: Request, exc: Exception) -> JSONResponse:
    # Stored data we cannot read as a contract, e.g. a CarePlan changed by another system in a
    # way the mapping does not allow: the client cannot fix it, an operator can.
    _log.error("stored contract unreadable", extra={"reason": str(exc), "path": request.url.path})
    return problem_response(502, "Stored contract unreadable", str(exc))
