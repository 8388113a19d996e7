"""The FastAPI application: the service's lifespan (`fhir_service.service.Service`), the
middleware every request passes, the routes, and the JSON facade's one error handler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhir_service import __version__
from fhir_service.api import (
    booking,
    consents,
    contracts,
    health,
    labels_routes,
    patient_page,
    patients,
    smart,
    webhooks,
)
from fhir_service.api.activity import Activity
from fhir_service.api.fhir import conformance as fhir_conformance
from fhir_service.api.fhir import consents as fhir_consents
from fhir_service.api.fhir import routes as fhir_routes
from fhir_service.api.fhir import scheduling as fhir_scheduling
from fhir_service.api.fhir import transactions as fhir_transactions
from fhir_service.api.fhir import writes as fhir_writes
from fhir_service.api.fhir.bodies import json_refusal as fhir_json_refusal
from fhir_service.api.form_tokens import FormTokens
from fhir_service.api.json_bodies import StrictJsonMiddleware
from fhir_service.api.middleware.body_limit import BodyLimitMiddleware
from fhir_service.api.middleware.hapi_hooks import HapiHooks
from fhir_service.api.middleware.observability import RequestContextMiddleware
from fhir_service.api.middleware.operation_outcomes import OperationOutcomeMiddleware
from fhir_service.api.middleware.security import SecurityMiddleware
from fhir_service.api.openapi import install as install_openapi
from fhir_service.api.patient_page import refused_page
from fhir_service.api.problems import problem_response, refused
from fhir_service.booking import seed_definitions
from fhir_service.contract import described, json_path
from fhir_service.errors import ServiceError
from fhir_service.metrics import Metrics
from fhir_service.security import TokenValidator
from fhir_service.service import Service
from fhir_service.settings import Settings

__all__ = ["create_app"]

_log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the app for ``settings``; ``settings.hapi_url`` must be set by now.

    The embedded default (no HAPI URL) is resolved by the command line before this is called.
    """
    if settings.hapi_url is None:
        raise ValueError("create_app needs settings.hapi_url; the CLI fills it for embedded HAPI")
    metrics = Metrics()
    # Audit writes to HAPI wait for a lull in requests, which the outermost middleware sees.
    activity = Activity()
    # Built here, not in the lifespan: incomplete auth settings stop the start, with the reason.
    validator = TokenValidator.from_settings(settings)
    # So does a seed of time types that is no seed.
    seed = None if settings.time_types_seed is None else seed_definitions(settings.time_types_seed)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = app.state.service = Service(settings, metrics, seed=seed)
        background = service.start(quiet=activity.quiet_for)
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await service.aclose()

    app = FastAPI(
        title="Patient contracts FHIR service",
        version=__version__,
        summary="Patient contracts (patientkontrakt, individuell plan) on FHIR R4.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    secret = settings.form_secret
    key = None if secret is None else secret.get_secret_value().encode()
    app.state.form_tokens = FormTokens(key)
    # Added inner first: a request meets HAPI's hooks (which answer their own), the FHIR error
    # form, the request context, the body limit, the security layer (token, access decision,
    # audit record), then the routes.
    # Innermost, so its refusals are audited: a JSON body repeating a key or holding NaN.
    app.add_middleware(StrictJsonMiddleware, facades={"/fhir": fhir_json_refusal})
    app.add_middleware(SecurityMiddleware, validator=validator)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, activity=activity)
    # Every refusal below /fhir, from whichever layer, leaves as an OperationOutcome.
    app.add_middleware(OperationOutcomeMiddleware)
    # Outermost: HAPI's hook calls, several for each contract written, are answered at once.
    app.add_middleware(HapiHooks, metrics=metrics)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    # The JSON facade's one handler of every refusal and failure below it; the FHIR endpoint's
    # routes answer theirs as OperationOutcomes (api/fhir/answers.py).
    app.add_exception_handler(ServiceError, _refused)
    app.include_router(health.router)
    app.include_router(contracts.router)
    app.include_router(patients.router)
    app.include_router(patient_page.router)
    app.include_router(labels_routes.router)
    app.include_router(booking.router)
    # Before the read routes, which would take "$find" or ".well-known" for an id.
    app.include_router(smart.router)
    app.include_router(fhir_conformance.router)
    app.include_router(fhir_scheduling.router)
    app.include_router(fhir_consents.router)
    app.include_router(fhir_routes.router)
    app.include_router(fhir_transactions.router)
    app.include_router(fhir_writes.router)
    app.include_router(webhooks.router)
    app.include_router(consents.router)
    install_openapi(app)
    return app


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


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    answer = refused(request, exc)
    # The patient's pages say it as a page, in the reader's words; the record is the same.
    return refused_page(request, exc, answer.status_code) or answer
