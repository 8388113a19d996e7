"""The web layer takes from the packages below it only what they export.

Each package under ``fhir_service`` says its public names in its ``__init__``'s ``__all__``; a
module under ``api/`` imports from a package's face (``from fhir_service.booking import
BookingService``), never from a module inside it, and only names the face exports. So a package
can rearrange its modules without the web layer noticing, and what the web layer leans on is
written down in one place per package.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

API = Path(__file__).parents[3] / "fhir_service" / "api"
MODULES = sorted(API.rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """Each ``from fhir_service.<x>... import names`` of ``path`` outside ``api``: its line,
    module and names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fhir_service.") and not _in_api(alias.name):
                    found.append((node.lineno, alias.name, []))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module is not None
            and node.module.startswith("fhir_service.")
            and not _in_api(node.module)
        ):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def _in_api(module: str) -> bool:
    return module == "fhir_service.api" or module.startswith("fhir_service.api.")


def test_every_module_of_the_web_layer_was_read() -> None:
    assert len(MODULES) > 30
    assert any(_imports(path) for path in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(API)) for p in MODULES])
def test_the_web_layer_imports_only_what_packages_export(path: Path) -> None:
    wrong = []
    for line, module, names in _imports(path):
        if module.count(".") != 1:
            wrong.append(f"line {line}: {module} is inside a package; import from its face")
            continue
        exported = set(getattr(importlib.import_module(module), "__all__", ()))
        unexported = [n for n in names if n not in exported]
        if unexported:
            wrong.append(f"line {line}: {module} does not export {', '.join(unexported)}")

    assert wrong == []


# What the web layer never builds or calls itself: HAPI's client, the service database, the
# guard of the FHIR records. The service (fhir_service.service) puts those together.
_NOT_IN_THE_WEB_LAYER = ("fhir_service.fhir", "fhir_service.servicedb", "sqlalchemy", "httpx")


def _all_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.append((node.lineno, node.module))
            # ``from fhir_service import servicedb`` names the package as the imported name.
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(API)) for p in MODULES])
def test_the_web_layer_imports_neither_hapis_client_nor_the_database_nor_the_guard(
    path: Path,
) -> None:
    wrong = [
        f"line {line}: {module}"
        for line, module in _all_imports(path)
        if module.startswith(_NOT_IN_THE_WEB_LAYER) or module.endswith(".guard")
    ]

    assert wrong == []
