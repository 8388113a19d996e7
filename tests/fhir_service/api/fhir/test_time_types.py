"""A care unit's EHR defines its time types in FHIR, as HealthcareServices of our profile, with
plain HTTP and with ``fhirpy`` (a client nobody here wrote); the JSON facade reads the same
types, and bookings name them."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient

from fhir_service.mapping import urls
from tests.auth import TestIssuer
from tests.support import load_data, unique_hsa_id

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


class Unit:
    def __init__(self, issuer: TestIssuer) -> None:
        self.hsa_id = unique_hsa_id()
        self.ehr = {**issuer.headers("ehr", organization=f"hsa-id|{self.hsa_id}"), **FHIR_JSON}
        self.resource: dict[str, Any] = load_data(
            "booking/time-type-healthcareservice.json", unit=self.hsa_id
        )


def test_an_ehr_defines_changes_and_retires_a_time_type_in_fhir(
    base_url: str, issuer: TestIssuer
) -> None:
    unit = Unit(issuer)

    created = httpx.post(f"{base_url}/fhir/HealthcareService", json=unit.resource, headers=unit.ehr)

    assert created.status_code == 201, created.text
    stored = created.json()
    assert stored["meta"]["profile"] == [urls.PROFILE_TIME_TYPE]
    assert stored["meta"]["versionId"] == "1"
    listed = httpx.get(
        f"{base_url}/booking/care-units/hsa-id|{unit.hsa_id}/time-types", headers=unit.ehr
    )
    [kind] = listed.json()["time_types"]
    assert (kind["code"], kind["minutes"], kind["names"]["en"]) == (
        "hearing-test",
        60,
        "Hearing test",
    )
    assert kind["patient"] == {"book": True, "cancel": True, "rebook": False}
    # Again: the type exists, so a plain create is refused, a conditional one finds it.
    again = httpx.post(f"{base_url}/fhir/HealthcareService", json=unit.resource, headers=unit.ehr)
    assert again.status_code == 409, again.text
    condition = f"identifier={urls.ID_TIME_TYPE}|hsa-id:{unit.hsa_id}/hearing-test"
    found = httpx.post(
        f"{base_url}/fhir/HealthcareService",
        json=unit.resource,
        headers={**unit.ehr, "If-None-Exist": condition},
    )
    assert (found.status_code, found.json()["id"]) == (200, stored["id"])

    changed = copy.deepcopy(stored)
    changed["extension"][0]["extension"][4]["valueDuration"]["value"] = 48
    updated = httpx.put(
        f"{base_url}/fhir/HealthcareService/{stored['id']}",
        json=changed,
        headers={**unit.ehr, "If-Match": 'W/"1"'},
    )
    assert updated.status_code == 200, updated.text
    stale = httpx.put(
        f"{base_url}/fhir/HealthcareService/{stored['id']}",
        json=changed,
        headers={**unit.ehr, "If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412, stale.text
    retired = copy.deepcopy(updated.json()) | {"active": False}
    assert (
        httpx.put(
            f"{base_url}/fhir/HealthcareService/{stored['id']}", json=retired, headers=unit.ehr
        ).status_code
        == 200
    )
    [kind] = httpx.get(
        f"{base_url}/booking/care-units/hsa-id|{unit.hsa_id}/time-types", headers=unit.ehr
    ).json()["time_types"]
    assert (kind["cancel_cutoff_hours"], kind["active"]) == (48, False)
    read = httpx.get(f"{base_url}/fhir/HealthcareService/{stored['id']}", headers=unit.ehr)
    assert read.json()["active"] is False


def test_a_broken_time_type_gets_every_problem_where_it_is(
    base_url: str, issuer: TestIssuer
) -> None:
    unit = Unit(issuer)
    broken = copy.deepcopy(unit.resource)
    broken["language"] = "de"
    broken["extension"][0]["extension"] = broken["extension"][0]["extension"][1:]
    del broken["_name"]

    refused = httpx.post(f"{base_url}/fhir/HealthcareService", json=broken, headers=unit.ehr)

    assert refused.status_code == 422, refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    where = {e for i in outcome["issue"] for e in i.get("expression", [])}
    rules = f"HealthcareService.extension('{urls.EXT_TIME_TYPE_RULES}')"
    assert where >= {
        "HealthcareService.language",
        "HealthcareService.name",
        f"{rules}.extension('minutes')",
    }
    listed = httpx.get(
        f"{base_url}/booking/care-units/hsa-id|{unit.hsa_id}/time-types", headers=unit.ehr
    )
    assert listed.status_code == 404


@pytest.mark.parametrize("role", ["other-unit", "booking", "patient"])
def test_only_the_units_own_system_defines_its_time_types(
    base_url: str, issuer: TestIssuer, role: str
) -> None:
    unit = Unit(issuer)
    headers = {
        "other-unit": issuer.headers("ehr", organization=f"hsa-id|{unique_hsa_id()}"),
        "booking": issuer.headers("booking"),
        "patient": issuer.headers("patient", patient="personnummer|191212121212"),
    }[role]

    refused = httpx.post(
        f"{base_url}/fhir/HealthcareService", json=unit.resource, headers={**headers, **FHIR_JSON}
    )

    assert refused.status_code == 403, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_fhirpy_defines_a_time_type_and_the_capability_statement_offers_it(
    base_url: str, issuer: TestIssuer
) -> None:
    unit = Unit(issuer)
    client = SyncFHIRClient(f"{base_url}/fhir", authorization=unit.ehr["Authorization"])

    resource = client.resource("HealthcareService", **unit.resource)
    resource.save()

    assert resource.id is not None
    fetched = client.reference("HealthcareService", resource.id).to_resource()
    assert fetched["name"] == "Hörseltest"
    resource["name"] = "Hörselundersökning"
    resource.save()
    listed = httpx.get(
        f"{base_url}/booking/care-units/hsa-id|{unit.hsa_id}/time-types", headers=unit.ehr
    )
    assert listed.json()["time_types"][0]["names"]["sv"] == "Hörselundersökning"
    statement = httpx.get(f"{base_url}/fhir/metadata", headers=FHIR_JSON).json()
    [service] = [r for r in statement["rest"][0]["resource"] if r["type"] == "HealthcareService"]
    assert {"create", "update", "read"} <= {i["code"] for i in service["interaction"]}
    assert urls.PROFILE_TIME_TYPE in service.get("supportedProfile", [])
