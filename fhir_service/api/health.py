"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from fhir_service import servicedb
from fhir_service.api.deps import (
    ConformanceLoadedDep,
    EngineDep,
    HapiClientDep,
    InstanceDep,
    MetricsDep,
    SchemaReadyDep,
    SettingsDep,
)
from fhir_service.api.problems import PROBLEM_JSON, problem_response
from fhir_service.fhir import HapiUnavailableError

__all__ = ["router"]

_log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])


class Health(BaseModel):
    """The process is alive."""

    status: Literal["ok"] = "ok"


class Check(BaseModel):
    """The state of one dependency."""

    status: Literal["up", "down"]
    detail: str | None = None


class Readiness(BaseModel):
    """Every dependency answered."""

    status: Literal["ready"] = "ready"
    checks: dict[str, Check]


_NOT_READY_RESPONSE = {
    503: {
        "description": "A dependency did not answer; the problem names it and says why.",
        "content": {PROBLEM_JSON: {}},
    }
}


@router.get("/health", summary="Liveness: the process answers")
async def health() -> Health:
    """Always 200 while the process serves requests; it checks no dependency."""
    return Health()


@router.get(
    "/ready",
    summary="Readiness: HAPI FHIR and the service DB answer",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses=_NOT_READY_RESPONSE,  # type: ignore[arg-type]
)
async def ready(
    hapi: HapiClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    conformance_loaded: ConformanceLoadedDep,
    schema_ready: SchemaReadyDep,
    instance: InstanceDep,
) -> Readiness | JSONResponse:
    """200 when HAPI (serving R4, with our profiles) answers and the service DB takes a write,
    otherwise 503."""
    timeout = settings.ready_timeout_seconds
    checks: dict[str, Check] = {}
    try:
        await hapi.check_fhir_r4(timeout=timeout)
        checks["hapi"] = Check(status="up")
    except HapiUnavailableError as exc:
        _log.warning("HAPI not ready", extra={"hapi_url": exc.base_url, "reason": exc.reason})
        checks["hapi"] = Check(status="down", detail=f"HAPI FHIR server: {exc.reason}")
    try:
        if schema_ready.is_set():
            # A write, not a read: a database that answers but cannot be written (a read-only
            # file, a full disk, a replica) cannot keep the audit record of a single request.
            await asyncio.wait_for(asyncio.to_thread(instance.beat), timeout)
            checks["database"] = Check(status="up")
        else:
            await asyncio.wait_for(asyncio.to_thread(servicedb.ping, engine), timeout)
            checks["database"] = Check(
                status="down", detail="service database: schema not migrated yet"
            )
    except (SQLAlchemyError, TimeoutError) as exc:
        _log.warning("service DB not ready", extra={"reason": type(exc).__name__})
        checks["database"] = Check(status="down", detail=f"service database: {type(exc).__name__}")
    if conformance_loaded.is_set():
        checks["profiles"] = Check(status="up")
    else:
        checks["profiles"] = Check(
            status="down", detail="our profiles are not yet loaded into HAPI"
        )
    down = {name: check for name, check in checks.items() if check.status == "down"}
    if not down:
        return Readiness(checks=checks)
    return problem_response(
        503,
        "Not ready",
        "Unreachable: " + "; ".join(check.detail or name for name, check in down.items()),
        type_="/problems/not-ready",
        headers={"Retry-After": "5"},
        checks={name: check.model_dump(exclude_none=True) for name, check in checks.items()},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Request counts and latencies by route and status, and the same for calls to HAPI."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
