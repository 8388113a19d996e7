"""A contract made unreadable straight in HAPI: announced, named, and no search taken down.

Another system retitles an agreed contract's CarePlan in HAPI without revising it: no agreement
targets the new version, so the contract no longer reads. The unit's receiver still hears of the
change (marked ``readable: false``), reading the contract says why it fails (502), and the
unit's paged search answers every page, leaving the contract out and naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.faults.support import contract, service_settings, wait_for
from tests.service_process import running_service
from tests.support import unique_hsa_id
from tests.webhook_receiver import running_receiver

SECRET = "a-test-secret-that-is-long-enough"


def test_a_contract_broken_in_hapi_is_announced_and_left_out_of_searches_by_name(
    tmp_path: Path, conformance_loaded: str, issuer: TestIssuer
) -> None:
    unit = unique_hsa_id()
    headers = issuer.headers("ehr", organization=f"hsa-id|{unit}")
    contracts = [contract("unreadable") for _ in range(3)]
    for body in contracts:
        body["responsible_clinician"]["organization"]["identifier"]["value"] = unit
    broken = contracts[1]["id"]
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    agreements = [{"party": p, "agreed_at": now} for p in ("patient", "responsible-clinician")]
    settings = service_settings(conformance_loaded, f"sqlite:///{tmp_path / 'db'}", issuer)

    with (
        running_receiver(SECRET) as receiver,
        running_service(settings, tmp_path / "service.log") as service,
        httpx.Client(base_url=service, headers=headers, timeout=60) as http,
    ):
        hook = {
            "url": receiver.url,
            "secret": SECRET,
            "careUnit": {"kind": "hsa-id", "value": unit},
        }
        assert http.post("/webhooks", json=hook).status_code == 201
        for body in contracts:
            etag = http.post("/contracts", json=body).headers["ETag"]
            agreed = http.post(
                f"/contracts/{body['id']}/agree",
                json={"agreements": agreements},
                headers={"If-Match": etag},
            )
            assert agreed.status_code == 200, agreed.text
        careplan = httpx.get(
            f"{conformance_loaded}/CarePlan",
            params={"identifier": f"{urls.ID_CONTRACT}|{broken}"},
        ).json()["entry"][0]["resource"]
        retitled = httpx.put(
            f"{conformance_loaded}/CarePlan/{careplan['id']}",
            json={**careplan, "title": "retitled by another system"},
        )
        assert retitled.status_code == 200, retitled.text
        version = retitled.json()["meta"]["versionId"]

        def announced() -> list[dict[str, object]]:
            return [
                e["contract"]
                for e in receiver.events()
                if e["resource"]["reference"] == f"CarePlan/{careplan['id']}/_history/{version}"
            ]

        wait_for("the change that broke the contract was announced", lambda: bool(announced()))
        read = http.get(f"/contracts/{broken}")
        pages, shown, named = [], [], []
        url: str | None = f"/contracts?careUnit=hsa-id|{unit}&count=1"
        while url is not None:
            page = http.get(url)
            pages.append(page.status_code)
            shown += [c["id"] for c in page.json()["contracts"]]
            named += page.json()["unreadable"]
            url = page.json()["next"]

    assert announced() == [{"id": broken, "readable": False}]
    assert read.status_code == 502
    assert pages == [200, 200, 200]
    assert shown == [contracts[0]["id"], contracts[2]["id"]]
    assert named == [broken]
