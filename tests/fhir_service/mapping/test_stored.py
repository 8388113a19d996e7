"""A write names what the read found by id: no conditional create, no search, for it."""

from __future__ import annotations

from typing import Any

from fhir_service.mapping.stored import resolved

PATIENT_ID = {"system": "http://electronichealth.se/identifier/personnummer", "value": "1912"}
SERVICE_ID = {"system": "http://example/hs", "value": "unit-1"}
ORG_ID = {"system": "urn:oid:1.2.752.29.4.19", "value": "unit-1"}


def _create(url: str, kind: str, identifier: dict[str, str], **more: Any) -> dict[str, Any]:
    return {
        "fullUrl": url,
        "resource": {"resourceType": kind, "identifier": [identifier], **more},
        "request": {
            "method": "POST",
            "url": kind,
            "ifNoneExist": f"identifier={identifier['system']}|{identifier['value']}",
        },
    }


BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        _create("urn:uuid:p", "Patient", PATIENT_ID),
        _create("urn:uuid:o", "Organization", ORG_ID),
        _create(
            "urn:uuid:h", "HealthcareService", SERVICE_ID, providedBy={"reference": "urn:uuid:o"}
        ),
        _create("urn:uuid:r", "PractitionerRole", {"system": "http://example/role", "value": "x"}),
        {
            "fullUrl": "urn:uuid:a",
            "resource": {
                "resourceType": "Appointment",
                "id": "7",
                "participant": [
                    {"actor": {"reference": "urn:uuid:p"}},
                    {"actor": {"reference": "urn:uuid:h"}},
                    {"actor": {"reference": "urn:uuid:r"}},
                    {"actor": {"reference": f"Patient?identifier={PATIENT_ID['system']}|1912"}},
                ],
            },
            "request": {"method": "PUT", "url": "Appointment/7", "ifMatch": 'W/"3"'},
        },
    ],
}


def test_what_the_read_found_is_named_by_id_and_what_it_did_not_is_created_if_absent() -> None:
    stored = [
        {"resourceType": "Patient", "id": "11", "identifier": [PATIENT_ID]},
        {"resourceType": "HealthcareService", "id": "22", "identifier": [SERVICE_ID]},
        # Another type with the same identifier is another record.
        {"resourceType": "Practitioner", "id": "33", "identifier": [ORG_ID]},
    ]

    written = resolved(BUNDLE, stored)

    urls = [e["fullUrl"] for e in written["entry"]]
    # The unit's Organization went with its HealthcareService: nothing names it any more.
    assert urls == ["urn:uuid:r", "urn:uuid:a"]
    actors = [p["actor"]["reference"] for p in written["entry"][1]["resource"]["participant"]]
    assert actors == ["Patient/11", "HealthcareService/22", "urn:uuid:r", "Patient/11"]
    assert written["entry"][1]["request"] == BUNDLE["entry"][4]["request"]


def test_with_nothing_found_the_bundle_is_the_same() -> None:
    assert resolved(BUNDLE, []) == BUNDLE


def test_the_contracts_own_records_the_read_found_are_written_by_id() -> None:
    goal = {"system": "http://example/goal", "value": "c-1/sleep"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:g",
                "resource": {"resourceType": "Goal", "identifier": [goal]},
                "request": {"method": "PUT", "url": f"Goal?identifier={goal['system']}|c-1/sleep"},
            },
            {
                "fullUrl": "urn:uuid:n",
                "resource": {"resourceType": "Goal", "identifier": [{**goal, "value": "c-1/new"}]},
                "request": {"method": "PUT", "url": f"Goal?identifier={goal['system']}|c-1/new"},
            },
        ],
    }

    written = resolved(bundle, [{"resourceType": "Goal", "id": "5", "identifier": [goal]}])

    assert [e["request"]["url"] for e in written["entry"]] == [
        "Goal/5",
        f"Goal?identifier={goal['system']}|c-1/new",
    ]
    assert written["entry"][0]["resource"]["id"] == "5"
    assert "id" not in written["entry"][1]["resource"]
