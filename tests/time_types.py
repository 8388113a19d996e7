"""The seed of the care units' time types (``mappings/booking/time-types.json``): loaded into the
test session's HAPI through the JSON facade, as a clinic's system would define them, and read as
a catalogue by the unit tests of pure functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from fhir_service.contract import CareUnitTimes, Organization, TimeType, TimeTypes
from tests.auth import TestIssuer

__all__ = ["SEED", "define", "seed_catalogue", "seed_through_api", "seed_units"]

SEED = Path(__file__).parent.parent / "mappings" / "booking" / "time-types.json"


def seed_units() -> list[dict[str, Any]]:
    """The seed's care units, each with its time types, as the file says them."""
    units: list[dict[str, Any]] = json.loads(SEED.read_text("utf-8"))["care_units"]
    return units


def seed_catalogue() -> TimeTypes:
    """What the seed defines, as the service holds it once loaded."""
    return TimeTypes(
        CareUnitTimes(
            unit=Organization.model_validate(
                {
                    "identifier": dict(
                        zip(("kind", "value"), u["care_unit"].split("|"), strict=True)
                    ),
                    "name": u["unit_name"],
                    "kind": u["unit_kind"],
                }
            ),
            time_zone=u["time_zone"],
            time_types=tuple(TimeType.model_validate(t) for t in u["time_types"]),
        )
        for u in seed_units()
    )


def define(
    client: TestClient | httpx.Client,
    headers: dict[str, str],
    unit: dict[str, Any],
    time_type: dict[str, Any],
) -> httpx.Response:
    """PUT one of the seed's (or a test's own) time types of ``unit`` through the JSON facade."""
    body = {k: v for k, v in time_type.items() if k != "code"}
    body |= {k: v for k, v in unit.items() if k in ("unit_name", "unit_kind", "time_zone")}
    path = f"/booking/care-units/{unit['care_unit']}/time-types/{time_type['code']}"
    return client.put(path, json=body, headers=headers)


def seed_through_api(client: TestClient, issuer: TestIssuer) -> None:
    """Define every time type of the seed through the JSON facade, each with its unit's EHR
    token."""
    for unit in seed_units():
        headers = issuer.headers("ehr", organization=unit["care_unit"])
        for time_type in unit["time_types"]:
            answer = define(client, headers, unit, time_type)
            assert answer.status_code in (200, 201), answer.text
