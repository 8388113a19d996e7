"""Route dependencies: none of them sends a request through FastAPI's thread pool."""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from fhir_service.api import create_app
from fhir_service.settings import Settings


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _dependencies(dependency)


def test_every_dependency_of_every_route_is_a_coroutine() -> None:
    # FastAPI runs a plain function dependency in its thread pool: a thread hop on every
    # request for what only reads app or request state.
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            hapi_url="http://hapi.invalid/fhir", auth_local_issuer=True, data_dir=Path(directory)
        )
        app = create_app(settings)
    routes = [c.route for c in iter_route_contexts(app.routes) if isinstance(c.route, APIRoute)]
    plain = {
        f"{route.path}: {dependency.call.__qualname__}"
        for route in routes
        for dependency in _dependencies(route.dependant)
        if dependency.call is not None and not inspect.iscoroutinefunction(dependency.call)
    }

    assert len(routes) > 40
    assert plain == set()
