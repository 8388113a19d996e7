"""Our conformance resources in HAPI: profiles, code systems, value sets, maps, search params.

The files under ``profiles/`` and ``mappings/`` are the source; HAPI holds a copy so that it can
validate against them and search by our own parameters. Each is written by conditional update on
its canonical URL, in one transaction, so loading them again changes nothing unless a file
changed. HAPI 8.8 searches by a new SearchParameter from the next request on, but indexes only
resources written after it (hapi/README.md): loading comes before the service writes contracts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fhir_service.fhir import HapiClient, HapiRequestError, HapiUnavailableError
from fhir_service.mapping.tables import MAPPINGS_DIR
from fhir_service.sync.startup import keep_trying

__all__ = [
    "CONFORMANCE_DIRS",
    "CONFORMANCE_TYPES",
    "conformance_bundle",
    "conformance_resources",
    "load_until_done",
]

_PROFILES = MAPPINGS_DIR.parent / "profiles"
CONFORMANCE_DIRS = (
    MAPPINGS_DIR / "codesystems",
    MAPPINGS_DIR / "conceptmaps",
    _PROFILES / "valuesets",
    _PROFILES / "structuredefinitions",
    _PROFILES / "searchparameters",
    _PROFILES / "operationdefinitions",
)
CONFORMANCE_TYPES = frozenset(
    {
        "CodeSystem",
        "ValueSet",
        "ConceptMap",
        "StructureDefinition",
        "SearchParameter",
        "OperationDefinition",
    }
)


def conformance_resources() -> list[dict[str, Any]]:
    """Every conformance resource, read from its file, in a stable order."""
    resources = []
    for directory in CONFORMANCE_DIRS:
        for path in sorted(directory.glob("*.json")):
            resource = json.loads(path.read_text(encoding="utf-8"))
            if resource.get("resourceType") not in CONFORMANCE_TYPES or "url" not in resource:
                raise ValueError(f"{path} is not a conformance resource with a canonical url")
            resources.append(resource)
    return resources


def conformance_bundle() -> dict[str, Any]:
    """A transaction that puts every conformance resource under its canonical URL."""
    entries = []
    for resource in conformance_resources():
        body = {k: v for k, v in resource.items() if k != "id"}
        entries.append(
            {
                "resource": body,
                "request": {
                    "method": "PUT",
                    "url": f"{resource['resourceType']}?url={resource['url']}",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def load_until_done(
    hapi: HapiClient, loaded: asyncio.Event, *, first_wait: float = 1.0, max_wait: float = 30.0
) -> None:
    """Load the conformance resources into HAPI, retrying with back-off until it works.

    HAPI may start after the service, or be down for a while; the service keeps serving and
    reports "not ready" until ``loaded`` is set.
    """
    bundle = conformance_bundle()
    await keep_trying(
        "loading our profiles into HAPI",
        lambda: hapi.transaction(bundle, idempotent=True),
        loaded,
        retry_on=(HapiUnavailableError, HapiRequestError),
        first_wait=first_wait,
        max_wait=max_wait,
    )
