"""HAPI's Subscriptions for the change feed: made once, left alone when right, remade when not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fhir_service.fhir import HapiClient
from fhir_service.sync.changes import WATCHED_TYPES
from fhir_service.sync.subscriptions import TAG_SUBSCRIPTION, ensure_subscriptions
from tests.support import free_port


@pytest.fixture(autouse=True)
async def _forget_ours(hapi: HapiClient) -> AsyncIterator[None]:
    # Services tried before leave theirs behind, perhaps still being activated: HAPI writes the
    # active version a moment after the request, which would bring one deleted meanwhile back.
    await _forget(hapi, await _active(hapi))
    yield
    # Left behind, they would point the shared HAPI at ports nothing listens on.
    await _forget(hapi, await _ours(hapi))


async def _forget(hapi: HapiClient, found: dict[str, list[dict[str, Any]]]) -> None:
    for subscriptions in found.values():
        for subscription in subscriptions:
            await hapi.delete("Subscription", subscription["id"])


async def _ours(hapi: HapiClient) -> dict[str, list[dict[str, Any]]]:
    return {
        t: (await hapi.search("Subscription", [("_tag", f"{TAG_SUBSCRIPTION}|{t}")])).matches()
        for t in WATCHED_TYPES
    }


async def _active(hapi: HapiClient) -> dict[str, list[dict[str, Any]]]:
    # HAPI turns a requested Subscription active a moment later, writing a version of its own.
    for _ in range(120):
        found = await _ours(hapi)
        if all(s["status"] == "active" for f in found.values() for s in f):
            return found
        await asyncio.sleep(0.25)
    pytest.fail(f"not active: {found}")


async def test_one_subscription_per_type_is_made_and_kept_while_it_is_right(
    hapi: HapiClient,
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/hooks/hapi"

    await ensure_subscriptions(hapi, endpoint, "token-1")
    first = await _active(hapi)
    await ensure_subscriptions(hapi, endpoint, "token-1")
    again = await _ours(hapi)

    assert {t: len(found) for t, found in first.items()} == dict.fromkeys(WATCHED_TYPES, 1)
    for resource_type in WATCHED_TYPES:
        before, after = first[resource_type][0], again[resource_type][0]
        assert after["channel"]["endpoint"] == endpoint
        assert after["channel"]["header"] == ["Authorization: Bearer token-1"]
        assert "payload" not in after["channel"]
        assert (after["id"], after["meta"]["versionId"]) == (
            before["id"],
            before["meta"]["versionId"],
        )


async def test_a_subscription_to_another_endpoint_is_replaced_not_updated(
    hapi: HapiClient,
) -> None:
    await ensure_subscriptions(hapi, f"http://127.0.0.1:{free_port()}/hooks/hapi", "token-1")
    first = await _ours(hapi)
    moved = f"http://127.0.0.1:{free_port()}/hooks/hapi"

    await ensure_subscriptions(hapi, moved, "token-2")
    now = await _ours(hapi)

    for resource_type in WATCHED_TYPES:
        assert len(now[resource_type]) == 1
        assert now[resource_type][0]["id"] != first[resource_type][0]["id"]
        assert now[resource_type][0]["channel"]["endpoint"] == moved
