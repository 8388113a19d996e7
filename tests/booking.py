"""Bookable times and contracts to book them for, made through the service's own API."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from fhir_service.contract import Contract
from tests.support import load_data, unique_personnummer

__all__ = ["UNIT", "contract_with_times", "far_hours", "publish"]

EXAMPLES = Path(__file__).parent.parent / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"
"""The elderly-psychiatry example's unit, which publishes nurse visits patients may book."""


def far_hours() -> Iterator[datetime]:
    """Whole hours of a random far-off day: this run's times are its own, whatever HAPI holds."""
    day = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(3000))
    first = day + timedelta(minutes=random.randrange(12 * 60))
    return (first + timedelta(hours=h) for h in range(1000))


def publish(
    service: httpx.Client,
    clinic: dict[str, str],
    starts: list[datetime],
    time_type: str = "nurse-visit",
) -> list[str]:
    """Publish half-hour times of ``time_type`` at ``starts``; the ids of their Slots."""
    times = [
        {"start": s.isoformat(), "end": (s + timedelta(minutes=30)).isoformat()} for s in starts
    ]
    path = f"/booking/care-units/{UNIT}/time-types/{time_type}/slots"
    published = service.post(path, json={"times": times}, headers=clinic)
    assert published.status_code == 200, published.text
    found = service.get(
        "/booking/slots",
        params={
            "careUnit": UNIT,
            "timeType": time_type,
            "from": starts[0].isoformat(),
            "to": (starts[-1] + timedelta(minutes=1)).isoformat(),
            "count": 100,
        },
        headers=clinic,
    )
    assert found.status_code == 200, found.text
    # Only ours: other runs on the same HAPI may publish around them.
    ours = set(starts)
    ids = [s["id"] for s in found.json()["slots"] if datetime.fromisoformat(s["start"]) in ours]
    assert len(ids) == len(starts)
    return ids


def contract_with_times(
    service: TestClient, clinic: dict[str, str], times: int = 1, *, agreed: bool = False
) -> Contract:
    """An elderly-psychiatry contract of a new patient with ``times`` proposed nurse visits."""
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"bk-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    unit = data["responsible_clinician"]["organization"]
    data["agreed_times"] = [
        {
            "key": f"nurse-{n}",
            "description": "Blodprov och samtal hos sjuksköterskan",
            "organization": unit,
            "time_type": "nurse-visit",
        }
        for n in range(times)
    ] + [
        {
            "key": "psychiatrist",
            "description": "Återbesök hos psykiatern",
            "organization": unit,
            "time_type": "psychiatrist-followup",
        }
    ]
    contract = Contract.model_validate(data)
    created = service.post("/contracts", json=contract.model_dump(mode="json"), headers=clinic)
    assert created.status_code == 201, created.text
    if agreed:
        agreements = load_data("booking/agreements.json")
        answer = service.post(
            f"/contracts/{contract.id}/agree",
            json=agreements,
            headers={**clinic, "If-Match": 'W/"1"'},
        )
        assert answer.status_code == 200, answer.text
    return contract
