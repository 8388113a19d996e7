"""What the fault tests share: contracts of their own, their service's settings, and the trail
(AuditEvents by request id, contracts and Provenances by contract id) they check afterwards."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.support import unique_personnummer

__all__ = [
    "UNIT",
    "audit_events",
    "careplans",
    "contract",
    "created_provenances",
    "service_settings",
    "wait_for",
]

EXAMPLE = (
    Path(__file__).parents[2] / "profiles" / "examples" / "contracts" / "elderly-psychiatry.json"
)
UNIT = "hsa-id|SE2321000065-1254"
"""The example contracts' responsible unit: the clinician tokens of the fault tests act for it."""


def contract(prefix: str = "fault") -> dict[str, Any]:
    """A contract of the example's unit with an id and a patient of its own."""
    data: dict[str, Any] = json.loads(EXAMPLE.read_text("utf-8"))
    data["id"] = f"{prefix}-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    return data


def service_settings(hapi_url: str, database_url: str, issuer: TestIssuer) -> dict[str, str]:
    """``FHIR_SERVICE_*`` settings (without the prefix) of a service process under test."""
    return {
        "HAPI_URL": hapi_url,
        "DATABASE_URL": database_url,
        "HAPI_TIMEOUT_SECONDS": "10",
        "CHANGE_FEED_INTERVAL_SECONDS": "2",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "LOG_LEVEL": "INFO",
        **issuer.env(),
    }


def wait_for(what: str, condition: Callable[[], bool], seconds: float = 90.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.5)


def audit_events(hapi_url: str, request_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """HAPI's AuditEvents of each request, by the request id (``X-Request-ID``) they name."""
    wanted = sorted(set(request_ids))
    found: dict[str, list[dict[str, Any]]] = {rid: [] for rid in wanted}
    with httpx.Client(base_url=hapi_url, timeout=60) as hapi:
        for start in range(0, len(wanted), 50):
            chunk = wanted[start : start + 50]
            url: str | None = "/AuditEvent"
            params: dict[str, str] | None = {
                "entity-identifier": ",".join(chunk),
                "_count": "500",
            }
            while url is not None:
                page = hapi.get(url, params=params).json()
                for entry in page.get("entry", []):
                    event = entry["resource"]
                    for entity in event.get("entity", []):
                        value = entity.get("what", {}).get("identifier", {}).get("value")
                        if value in found:
                            found[value].append(event)
                url = next(
                    (link["url"] for link in page.get("link", []) if link["relation"] == "next"),
                    None,
                )
                params = None
    return found


def careplans(hapi_url: str, contract_ids: Iterable[str]) -> Counter[str]:
    """How many CarePlans HAPI holds of each contract."""
    return _count_by_identifier(hapi_url, "CarePlan", "identifier", urls.ID_CONTRACT, contract_ids)


def created_provenances(hapi_url: str, contract_ids: Iterable[str]) -> Counter[str]:
    """How many Provenances of a creation HAPI holds of each contract."""
    return _count_by_identifier(hapi_url, "Provenance", "_tag", urls.TAG_CREATED, contract_ids)


def _count_by_identifier(
    hapi_url: str, kind: str, parameter: str, system: str, values: Iterable[str]
) -> Counter[str]:
    wanted = sorted(set(values))
    counts: Counter[str] = Counter(dict.fromkeys(wanted, 0))
    with httpx.Client(base_url=hapi_url, timeout=60) as hapi:
        for start in range(0, len(wanted), 50):
            chunk = wanted[start : start + 50]
            tokens = ",".join(f"{system}|{value}" for value in chunk)
            page = hapi.get(
                f"/{kind}",
                params={parameter: tokens, "_count": "500", "_elements": "identifier,meta"},
            ).json()
            for entry in page.get("entry", []):
                resource = entry["resource"]
                codes = [i.get("value") for i in resource.get("identifier", [])]
                codes += [t.get("code") for t in resource.get("meta", {}).get("tag", [])]
                counts.update(value for value in chunk if value in codes)
    return counts
