"""Roles: the claims of each role's token, and scopes that say what each role needs, no more."""

from __future__ import annotations

import time

import pytest

from fhir_service.security.roles import ROLE_SCOPES, Role, claims_for
from fhir_service.security.scopes import parse_scopes

ROLES: tuple[Role, ...] = ("clinician", "ehr", "booking", "patient", "relative", "auditor")
NOW = 1_800_000_000.75


def test_the_role_table_holds_every_role() -> None:
    assert set(ROLE_SCOPES) == set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_a_roles_claims_carry_issuer_audience_subject_client_and_scopes(role: Role) -> None:
    claims = claims_for(
        role,
        issuer="urn:issuer",
        audience="urn:audience",
        subject="user-1",
        client_id="client-1",
        lifetime_seconds=600,
        now=NOW,
    )

    assert set(claims) == {"iss", "aud", "sub", "client_id", "scope", "iat", "exp", "jti"}
    assert (claims["iss"], claims["aud"], claims["sub"], claims["client_id"]) == (
        "urn:issuer",
        "urn:audience",
        "user-1",
        "client-1",
    )
    assert claims["scope"].split(" ") == list(ROLE_SCOPES[role])
    assert (claims["iat"], claims["exp"]) == (1_800_000_000, 1_800_000_600)


def test_the_default_client_and_lifetime_are_the_command_lines_hour() -> None:
    claims = claims_for("auditor", issuer="i", audience="a", subject="s", now=NOW)

    assert claims["client_id"] == "fhir-service-cli"
    assert claims["exp"] - claims["iat"] == 3600


def test_without_now_the_token_is_issued_at_the_current_time() -> None:
    before = int(time.time())
    claims = claims_for("auditor", issuer="i", audience="a", subject="s", lifetime_seconds=60)
    after = int(time.time())

    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 60


@pytest.mark.parametrize(
    ("organization", "patient", "present"),
    [
        (None, None, {}),
        ("hsa-id|SE2321000065-1254", None, {"organization": "hsa-id|SE2321000065-1254"}),
        (None, "personnummer|19121212-1212", {"patient": "personnummer|19121212-1212"}),
        (
            "hsa-id|SE2321000065-1254",
            "personnummer|19121212-1212",
            {"organization": "hsa-id|SE2321000065-1254", "patient": "personnummer|19121212-1212"},
        ),
    ],
)
def test_organization_and_patient_are_claimed_only_when_given(
    organization: str | None, patient: str | None, present: dict[str, str]
) -> None:
    claims = claims_for(
        "clinician",
        issuer="i",
        audience="a",
        subject="s",
        organization=organization,
        patient=patient,
        now=NOW,
    )

    assert {k: v for k, v in claims.items() if k in ("organization", "patient")} == present


def test_every_token_gets_its_own_id() -> None:
    ids = {claims_for("booking", issuer="i", audience="a", subject="s", now=NOW)["jti"]}
    ids.add(claims_for("booking", issuer="i", audience="a", subject="s", now=NOW)["jti"])

    assert len(ids) == 2


@pytest.mark.parametrize("role", ROLES)
def test_every_scope_of_every_role_is_a_resource_scope_as_spelt(role: Role) -> None:
    scopes = ROLE_SCOPES[role]

    parsed = parse_scopes(scopes)

    assert len(parsed) == len(scopes) > 0
    assert {str(s) for s in parsed} == set(scopes)


def test_a_booking_platform_has_no_care_plan_scope() -> None:
    types = {s.resource_type for s in parse_scopes(ROLE_SCOPES["booking"])}

    # Bookable times, appointments, and the directory they name: no patient's record.
    directory = {"Practitioner", "PractitionerRole", "Organization", "HealthcareService"}
    assert types <= {"Slot", "Schedule", "Appointment"} | directory
    assert not types & {"CarePlan", "Patient", "RelatedPerson", "Goal", "CareTeam"}


def test_an_auditor_only_reads_and_searches_the_audit_trail() -> None:
    scopes = parse_scopes(ROLE_SCOPES["auditor"])

    assert {s.resource_type for s in scopes} == {"AuditEvent", "Provenance"}
    assert all(s.permissions == {"r", "s"} for s in scopes)


@pytest.mark.parametrize("role", ["patient", "relative", "booking"])
def test_no_role_but_a_care_units_writes_care_plans(role: Role) -> None:
    scopes = parse_scopes(ROLE_SCOPES[role])

    assert not any(s.grants("CarePlan", p) for s in scopes for p in ("c", "u", "d"))


@pytest.mark.parametrize(("role", "context"), [("clinician", "user"), ("ehr", "system")])
def test_a_care_units_roles_write_care_plans_in_their_own_context(role: Role, context: str) -> None:
    scopes = parse_scopes(ROLE_SCOPES[role])

    assert {s.context for s in scopes} == {context}
    assert any(s.grants("CarePlan", "u") for s in scopes)


@pytest.mark.parametrize("role", ["patient", "relative"])
def test_a_patients_and_a_relatives_scopes_are_all_patient_scopes(role: Role) -> None:
    assert {s.context for s in parse_scopes(ROLE_SCOPES[role])} == {"patient"}


def test_a_relative_reads_the_plan_and_writes_nothing_but_their_reports() -> None:
    scopes = parse_scopes(ROLE_SCOPES["relative"])
    written = {(s.resource_type, p) for s in scopes for p in s.permissions if p in "cud"}

    # A report (or a refused signature) is the one act; no consents, webhooks or bookings.
    assert written == {("Provenance", "c")}
