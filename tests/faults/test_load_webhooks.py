"""20 clients for a minute with webhooks registered: every change announced exactly once, every
request audited exactly once.

The service runs on PostgreSQL. Each client creates contracts of one care unit under
``Idempotency-Key``s, reads them, searches them and retitles them, for at least
``LOAD_SECONDS``. A receiver registered for the unit counts what arrives. Afterwards every
version of every CarePlan, CareTeam and Appointment of those contracts, as HAPI's ``_history``
lists them, has reached the receiver exactly once (by ``webhook-id``, and once per version),
nothing else of them came, and every request the clients made has exactly one AuditEvent.
Under this load the change feed once lost a window of CarePlan events for good: its one cursor
for three types moved past CarePlans committed while it looked up the others.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fhir_service.mapping.ownership import contract_of
from tests.auth import TestIssuer
from tests.faults.support import audit_events, contract, service_settings, wait_for
from tests.postgres import fresh_database
from tests.service_process import ServiceProcess
from tests.support import unique_hsa_id
from tests.webhook_receiver import running_receiver

CLIENTS = 20
LOAD_SECONDS = 60.0
SECRET = "a-test-secret-that-is-long-enough"
WATCHED = ("CarePlan", "CareTeam", "Appointment")


def test_under_twenty_clients_every_change_reaches_the_receiver_once_and_every_request_is_audited(
    tmp_path: Path, conformance_loaded: str, issuer: TestIssuer
) -> None:
    unit = unique_hsa_id()
    headers = issuer.headers("ehr", organization=f"hsa-id|{unit}")
    request_ids: list[str] = []
    statuses: Counter[int] = Counter()
    created: list[str] = []
    lock = threading.Lock()
    started = datetime.now(UTC)

    with running_receiver(SECRET) as receiver, fresh_database() as database:
        service = ServiceProcess(
            service_settings(conformance_loaded, database, issuer), tmp_path / "service.log"
        )
        service.start()
        try:
            registered = httpx.post(
                f"{service.base_url}/webhooks",
                json={
                    "url": receiver.url,
                    "secret": SECRET,
                    "careUnit": {"kind": "hsa-id", "value": unit},
                },
                headers=headers,
                timeout=30,
            )
            assert registered.status_code == 201, registered.text

            with httpx.Client(base_url=service.base_url, headers=headers, timeout=60) as http:

                def ask(method: str, path: str, **kwargs: Any) -> httpx.Response:
                    request_id = uuid.uuid4().hex
                    extra = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
                    response = http.request(method, path, headers=extra, **kwargs)
                    with lock:
                        request_ids.append(request_id)
                        statuses[response.status_code] += 1
                    return response

                def client() -> None:
                    deadline = time.monotonic() + LOAD_SECONDS
                    while time.monotonic() < deadline:
                        body = contract("load")
                        body["responsible_clinician"]["organization"]["identifier"]["value"] = unit
                        key = {"Idempotency-Key": str(uuid.uuid4())}
                        made = ask("POST", "/contracts", json=body, headers=key)
                        if made.status_code != 201:
                            continue
                        with lock:
                            created.append(body["id"])
                        etag = made.headers["ETag"]
                        patient = body["patient"]["identifier"]["value"]
                        for turn in range(2):
                            ask("GET", f"/contracts/{body['id']}")
                            ask("GET", "/contracts", params={"patient": f"personnummer|{patient}"})
                            body["title"] = f"{body['title'].split(' #')[0]} #{turn}"
                            changed = ask(
                                "PUT",
                                f"/contracts/{body['id']}",
                                json=body,
                                headers={"If-Match": etag},
                            )
                            etag = changed.headers.get("ETag", etag)

                with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
                    [f.result() for f in [pool.submit(client) for _ in range(CLIENTS)]]
            loaded = datetime.now(UTC)

            expected = _versions_in_history(conformance_loaded, started, set(created))

            def all_arrived() -> bool:
                return expected <= set(_announced(receiver.events(), set(created)))

            wait_for("every change reached the receiver", all_arrived, 240)
            drained = datetime.now(UTC)
            # A little longer, for anything that would come twice.
            time.sleep(3)
            announced = _announced(receiver.events(), set(created))

            def all_audited() -> bool:
                events = audit_events(conformance_loaded, request_ids)
                return all(len(e) == 1 for e in events.values())

            wait_for("every request is in HAPI's audit trail", all_audited, 240)
        finally:
            service.stop()

    print(  # for the record of a run (pytest -s)
        f"{len(request_ids)} requests ({dict(statuses)}) in "
        f"{(loaded - started).total_seconds():.0f} s, {len(created)} contracts, "
        f"{len(expected)} changes announced, drained {(drained - loaded).total_seconds():.0f} s "
        "after the load"
    )
    assert statuses[500] == 0
    assert len(created) >= CLIENTS
    assert receiver.duplicates == []
    assert receiver.bad_signatures == []
    assert Counter(announced) == dict.fromkeys(expected, 1)


def _announced(events: list[dict[str, Any]], contracts: set[str]) -> list[tuple[str, str, str]]:
    """Type, id and version of each event about one of ``contracts``."""
    return [
        (e["resource"]["resourceType"], e["resource"]["id"], e["resource"]["versionId"])
        for e in events
        if (e.get("contract") or {}).get("id") in contracts
    ]


def _versions_in_history(
    hapi_url: str, since: datetime, contracts: set[str]
) -> set[tuple[str, str, str]]:
    """Every version of a watched record of ``contracts`` that HAPI's history holds."""
    found: set[tuple[str, str, str]] = set()
    with httpx.Client(base_url=hapi_url, timeout=120) as hapi:
        for kind in WATCHED:
            url: str | None = f"/{kind}/_history"
            params: dict[str, str] | None = {
                "_since": since.isoformat(timespec="milliseconds"),
                "_count": "500",
            }
            while url is not None:
                page = hapi.get(url, params=params).json()
                for entry in page.get("entry", []):
                    resource = entry.get("resource")
                    if isinstance(resource, dict) and contract_of(resource) in contracts:
                        found.add((kind, resource["id"], resource["meta"]["versionId"]))
                url = next(
                    (link["url"] for link in page.get("link", []) if link["relation"] == "next"),
                    None,
                )
                params = None
    return found
