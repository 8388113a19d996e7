"""The HAPI client against the real HAPI: reads, versions, paging, and HAPI's real errors."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fhir_service.fhir import (
    ConflictError,
    GoneError,
    HapiClient,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
)
from fhir_service.metrics import Metrics


@pytest.fixture
async def hapi(hapi_base_url: str) -> AsyncIterator[HapiClient]:
    client = HapiClient(hapi_base_url, Metrics())
    yield client
    await client.aclose()


def _goal(system: str, value: str, status: str = "proposed") -> dict[str, object]:
    return {
        "resourceType": "Goal",
        "identifier": [{"system": system, "value": value}],
        "lifecycleStatus": status,
        "description": {"text": f"goal {value}"},
        "subject": {"display": "test patient"},
    }


async def test_conditional_create_read_vread_history(hapi: HapiClient, system: str) -> None:
    first = await hapi.create(_goal(system, "g"), if_none_exist=f"identifier={system}|g")
    again = await hapi.create(_goal(system, "g"), if_none_exist=f"identifier={system}|g")
    updated = await hapi.update(first | {"lifecycleStatus": "active"}, if_match=1)

    assert again["id"] == first["id"]
    assert updated["meta"]["versionId"] == "2"
    assert (await hapi.read("Goal", first["id"]))["lifecycleStatus"] == "active"
    assert (await hapi.vread("Goal", first["id"], 1))["lifecycleStatus"] == "proposed"
    history = await hapi.history("Goal", first["id"])
    assert [r["meta"]["versionId"] for r in history.resources] == ["2", "1"]


async def test_stale_if_match_on_an_update_is_a_conflict(hapi: HapiClient, system: str) -> None:
    goal = await hapi.create(_goal(system, "s"))
    await hapi.update(goal | {"lifecycleStatus": "active"}, if_match=1)

    # HAPI 8.8 answers 409, not 412, to a stale If-Match.
    with pytest.raises(ConflictError, match="is not the current version") as caught:
        await hapi.update(goal | {"lifecycleStatus": "cancelled"}, if_match=1)

    assert caught.value.status == 409
    assert (await hapi.read("Goal", goal["id"]))["lifecycleStatus"] == "active"


async def test_conditional_update_matching_two_resources_is_precondition_failed(
    hapi: HapiClient, system: str
) -> None:
    await hapi.create(_goal(system, "twin"))
    await hapi.create(_goal(system, "twin"))

    with pytest.raises(PreconditionFailedError) as caught:
        await hapi.conditional_update(f"identifier={system}|twin", _goal(system, "twin"))

    assert caught.value.status == 412


async def test_stale_if_match_in_a_transaction_is_a_conflict(hapi: HapiClient, system: str) -> None:
    goal = await hapi.create(_goal(system, "t"))
    await hapi.update(goal | {"lifecycleStatus": "active"}, if_match=1)
    entry = {
        "resource": goal | {"lifecycleStatus": "cancelled"},
        "request": {"method": "PUT", "url": f"Goal/{goal['id']}", "ifMatch": 'W/"1"'},
    }

    with pytest.raises(ConflictError, match="is not the current version"):
        await hapi.transaction({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


async def test_missing_and_deleted_resources(hapi: HapiClient, system: str) -> None:
    goal = await hapi.create(_goal(system, "d"))
    await hapi.delete("Goal", goal["id"])

    with pytest.raises(GoneError):
        await hapi.read("Goal", goal["id"])
    with pytest.raises(NotFoundError):
        await hapi.read("Goal", "no-such-goal-anywhere")


async def test_hapi_refusing_a_resource_is_invalid_request(hapi: HapiClient) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await hapi.create({"resourceType": "Goal", "lifecycleStatus": "not-a-status"})

    assert caught.value.outcome is not None
    assert "not-a-status" in caught.value.diagnostics


async def test_search_pages_through_every_match_and_respects_the_cap(
    hapi: HapiClient, system: str
) -> None:
    for n in range(5):
        await hapi.create(_goal(system, str(n)))
    params = [("identifier", f"{system}|"), ("_count", "2"), ("_total", "accurate")]

    everything = await hapi.search("Goal", params)
    capped = await hapi.search("Goal", params, max_pages=2)

    assert everything.total == 5
    assert everything.pages == 3
    assert sorted(r["identifier"][0]["value"] for r in everything.matches()) == list("01234")
    assert (capped.pages, len(capped.matches()), capped.truncated) == (2, 4, True)


class _ImportWatcher(importlib.abc.MetaPathFinder):
    """Notes every module Python goes looking for; finds none itself."""

    def __init__(self) -> None:
        self.looked_for: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.looked_for.append(fullname)


async def test_a_request_looks_for_no_module(hapi: HapiClient) -> None:
    # A failed import is not cached: a library trying one per request (httpcore does when
    # sniffio is missing) searches the whole sys.path on every request to HAPI.
    await hapi.search("Goal", [("_count", "1")])
    watcher = _ImportWatcher()
    sys.meta_path.insert(0, watcher)
    try:
        await hapi.search("Goal", [("_count", "1")])
    finally:
        sys.meta_path.remove(watcher)

    assert watcher.looked_for == []
