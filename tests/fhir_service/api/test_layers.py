"""The way through the house: each route takes one service, bound to its caller, and leaves
refusals to its facade's one handler.

A route parses the request, makes one call to the service of its facade (the caller's FHIR
records, contracts, booking or webhooks; the service itself for readiness and capabilities) and
says the answer in HTTP. The caller's walls and audit record are bound into that service once,
by its dependency, so no route takes them itself, and no route catches a refusal: the JSON
facade's handler (``api/problems.py``), the FHIR endpoint's (``api/fhir/answers.py``) and the
replay of Idempotency-Keys (``api/replays.py``) are the only places that do. (The security
middleware refuses before any route runs, a token it cannot check or a patient it cannot look
up, and answers those itself.)
"""

from __future__ import annotations

import ast
import importlib
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path

from fastapi.routing import APIRoute, iter_route_contexts

from fhir_service.api import create_app
from fhir_service.api.audit_trail import AuditTrail
from fhir_service.errors import ServiceError
from fhir_service.fhir import HapiError
from fhir_service.records import CallerBooking, CallerContracts, CallerRecords, CallerWebhooks
from fhir_service.security import Access
from fhir_service.service import Service
from fhir_service.settings import Settings

API = Path(__file__).parents[3] / "fhir_service" / "api"
SERVICES = {CallerRecords, CallerContracts, CallerBooking, CallerWebhooks, Service}
HANDLERS = {API / "problems.py", API / "fhir" / "answers.py", API / "replays.py"}


def _routes() -> list[APIRoute]:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            hapi_url="http://hapi.invalid/fhir", auth_local_issuer=True, data_dir=Path(directory)
        )
        app = create_app(settings)
    return [c.route for c in iter_route_contexts(app.routes) if isinstance(c.route, APIRoute)]


def _given(route: APIRoute) -> list[object]:
    """What each of the route's own dependencies gives it, by its declared type."""
    calls: list[Callable[..., object]] = [
        d.call for d in route.dependant.dependencies if d.call is not None
    ]
    return [typing.get_type_hints(call).get("return") for call in calls]


def test_every_route_takes_at_most_one_service() -> None:
    routes = _routes()
    many = {
        f"{sorted(route.methods)} {route.path}": [t for t in _given(route) if t in SERVICES]
        for route in routes
    }

    assert len(routes) > 40
    assert {path: found for path, found in many.items() if len(found) > 1} == {}
    # Not vacuous: the routes of every facade do take theirs.
    assert {t for found in many.values() for t in found} == SERVICES


def test_no_route_takes_the_callers_walls_or_audit_record_itself() -> None:
    taking = {
        route.path
        for route in _routes()
        if {Access, AuditTrail} & {t for t in _given(route) if isinstance(t, type)}
    }

    assert taking == set()


def _caught(path: Path) -> list[tuple[int, str]]:
    """Each name an ``except`` of ``path`` catches, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ExceptHandler) and node.type is not None:
            kinds = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            found += [(node.lineno, ast.unparse(kind)) for kind in kinds]
    return found


def test_no_module_of_the_web_layer_but_the_handlers_catches_a_refusal() -> None:
    modules = sorted(set(API.rglob("*.py")) - HANDLERS - set((API / "middleware").rglob("*.py")))
    catching = []
    for path in modules:
        name = ".".join(path.relative_to(API.parent.parent).with_suffix("").parts)
        module = importlib.import_module(name.removesuffix(".__init__"))
        for line, caught in _caught(path):
            kind = eval(caught, vars(module))
            if isinstance(kind, type) and issubclass(kind, ServiceError | HapiError):
                catching.append(f"{path.relative_to(API)}:{line} {caught}")

    assert len(modules) > 25
    # Not vacuous: the handlers do catch them.
    assert any("ServiceError" in c for h in HANDLERS for _, c in _caught(h))
    assert catching == []
