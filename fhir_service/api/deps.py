"""Dependencies of the routes, named as types (``HapiClientDep``) so signatures read as a spec."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from fhir_service.fhir import HapiClient
from fhir_service.metrics import Metrics
from fhir_service.settings import Settings

__all__ = ["EngineDep", "HapiClientDep", "MetricsDep", "SettingsDep"]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _hapi(request: Request) -> HapiClient:
    hapi: HapiClient = request.app.state.hapi
    return hapi


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


SettingsDep = Annotated[Settings, Depends(_settings)]
HapiClientDep = Annotated[HapiClient, Depends(_hapi)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
EngineDep = Annotated[Engine, Depends(_engine)]
