"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from fhir_service.api.deps import MetricsDep, ServiceDep
from fhir_service.api.problems import PROBLEM_JSON, problem_response

__all__ = ["router"]

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
async def ready(service: ServiceDep) -> Readiness | JSONResponse:
    """200 when HAPI (serving R4, with our profiles) answers and the service DB takes a write,
    otherwise 503."""
    checks = {
        name: Check(status="up" if check.up else "down", detail=check.detail)
        for name, check in (await service.readiness()).items()
    }
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
