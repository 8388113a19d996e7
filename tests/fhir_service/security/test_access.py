"""Access decisions: what each role may do, within which compartment, and each refusal's reason."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from fhir_service.contract import Contract, Identifier, IdentifierKind
from fhir_service.security import access
from fhir_service.security.access import (
    AccessDeniedError,
    Compartment,
    Denial,
    Requirement,
    claimed_identifier,
    decide,
    identifier_named,
)
from fhir_service.security.roles import ROLE_SCOPES, Role
from fhir_service.security.scopes import Context, Permission
from fhir_service.security.tokens import Principal
from tests.support import unique_personnummer

EXAMPLE = Path(__file__).parents[3] / "profiles/examples/contracts/elderly-psychiatry.json"
UNIT_CLAIM = "hsa-id|SE2321000065-1254"
UNIT = Identifier(kind=IdentifierKind.HSA_ID, value="SE2321000065-1254")
PATIENT = Identifier(kind=IdentifierKind.PERSONNUMMER, value="19390211-4689")
# Takes part in the example contract through a professional and activities, but is not the
# responsible unit.
MUNICIPALITY = Identifier(kind=IdentifierKind.HSA_ID, value="SE2120000662-1012")
CRUDS: tuple[Permission, ...] = ("c", "r", "u", "d", "s")


def principal(
    scopes: Iterable[str], *, organization: str | None = None, patient: str | None = None
) -> Principal:
    return Principal(
        subject="someone",
        client_id="test-client",
        scopes=frozenset(scopes),
        patient=patient,
        organization=organization,
    )


def of_role(role: Role, *, organization: str | None = None) -> Principal:
    return principal(ROLE_SCOPES[role], organization=organization)


def denial(who: Principal, requirement: Requirement, patient: Identifier | None = None) -> Denial:
    with pytest.raises(AccessDeniedError) as caught:
        decide(who, requirement, patient)
    return caught.value.denial


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract.model_validate(json.loads(EXAMPLE.read_text(encoding="utf-8")))


@pytest.mark.parametrize("permission", CRUDS)
@pytest.mark.parametrize(("role", "context"), [("clinician", "user"), ("ehr", "system")])
def test_a_care_units_token_reaches_its_units_care_plans_only(
    role: Role, context: Context, permission: Permission
) -> None:
    who = of_role(role, organization=UNIT_CLAIM)
    requirement = Requirement("CarePlan", permission)

    access = decide(who, requirement, None)

    assert (access.principal, access.requirement) == (who, requirement)
    assert access.context == context
    assert access.compartment == Compartment(organization=UNIT)


@pytest.mark.parametrize(
    ("role", "resource_type"),
    [
        ("clinician", "CarePlan"),
        ("clinician", "Goal"),
        ("clinician", "Appointment"),
        ("ehr", "CarePlan"),
        ("ehr", "Goal"),
        ("ehr", "CareTeam"),
        # Not ("ehr", "Appointment"): system/Appointment without an organization is read as a
        # booking platform's and reaches every clinic's appointments.
    ],
)
def test_a_care_units_token_without_its_organization_reaches_nothing(
    role: Role, resource_type: str
) -> None:
    assert denial(of_role(role), Requirement(resource_type, "r")) is Denial.NO_ORGANIZATION


@pytest.mark.parametrize(
    ("resource_type", "permission"),
    [*(("Appointment", p) for p in CRUDS), ("Slot", "r"), ("Slot", "s"), ("Schedule", "s")],
)
def test_a_booking_platform_reaches_every_clinics_bookings(
    resource_type: str, permission: Permission
) -> None:
    access = decide(of_role("booking"), Requirement(resource_type, permission), None)

    assert access.context == "system"
    assert access.compartment == Compartment()


@pytest.mark.parametrize(
    ("resource_type", "permission"),
    [
        ("CarePlan", "u"),
        ("CarePlan", "r"),
        ("CarePlan", "c"),
        ("CarePlan", "s"),
        ("Goal", "r"),
        ("Slot", "c"),
        ("Schedule", "d"),
    ],
)
def test_a_booking_platform_reaches_no_care_plan_and_writes_no_slot(
    resource_type: str, permission: Permission
) -> None:
    requirement = Requirement(resource_type, permission)

    assert denial(of_role("booking"), requirement) is Denial.INSUFFICIENT_SCOPE


@pytest.mark.parametrize(
    ("resource_type", "permission"),
    [("CarePlan", "r"), ("CarePlan", "s"), ("Goal", "r"), ("Appointment", "c"), ("Slot", "s")],
)
def test_a_patient_reaches_their_own_data_only(resource_type: str, permission: Permission) -> None:
    who = principal(ROLE_SCOPES["patient"], patient="personnummer|19390211-4689")

    access = decide(who, Requirement(resource_type, permission), PATIENT)

    assert access.context == "patient"
    assert access.compartment == Compartment(patient=PATIENT)


@pytest.mark.parametrize(
    ("resource_type", "permission"),
    [("CarePlan", "u"), ("CarePlan", "c"), ("CarePlan", "d"), ("Goal", "u"), ("Slot", "c")],
)
def test_a_patient_cannot_write_their_care_plan(resource_type: str, permission: Permission) -> None:
    requirement = Requirement(resource_type, permission)

    assert denial(of_role("patient"), requirement, PATIENT) is Denial.INSUFFICIENT_SCOPE


def test_a_patient_token_that_names_no_patient_reaches_nothing() -> None:
    assert denial(of_role("patient"), Requirement("CarePlan", "r"), None) is Denial.NO_PATIENT


def test_a_patient_token_is_walled_in_to_its_patient_even_with_an_organization() -> None:
    who = of_role("patient", organization=UNIT_CLAIM)

    access = decide(who, Requirement("CarePlan", "r"), PATIENT)

    assert access.compartment == Compartment(patient=PATIENT)


@pytest.mark.parametrize("organization", [None, UNIT_CLAIM])
@pytest.mark.parametrize(
    ("resource_type", "permission"),
    [("AuditEvent", "r"), ("AuditEvent", "s"), ("Provenance", "r"), ("Provenance", "s")],
)
def test_an_auditor_reads_the_whole_audit_trail(
    resource_type: str, permission: Permission, organization: str | None
) -> None:
    access = decide(
        of_role("auditor", organization=organization), Requirement(resource_type, permission), None
    )

    assert access.context == "user"
    assert access.compartment == Compartment()


@pytest.mark.parametrize(
    "scopes",
    [ROLE_SCOPES["auditor"], ("user/*.cruds",), ("system/AuditEvent.cruds",)],
)
@pytest.mark.parametrize(
    ("resource_type", "permission"),
    [("AuditEvent", "c"), ("AuditEvent", "u"), ("AuditEvent", "d"), ("Provenance", "u")],
)
def test_audit_records_are_read_only_whatever_the_scopes(
    scopes: tuple[str, ...], resource_type: str, permission: Permission
) -> None:
    who = principal(scopes, organization=UNIT_CLAIM)

    assert denial(who, Requirement(resource_type, permission)) is Denial.READ_ONLY


def test_a_signature_is_given_within_the_walls_of_the_signers_contracts() -> None:
    unit = decide(of_role("clinician", organization=UNIT_CLAIM), _SIGN, None)
    patient = decide(of_role("patient"), _SIGN, PATIENT)

    assert unit.compartment == Compartment(organization=UNIT)
    assert patient.compartment == Compartment(patient=PATIENT)
    # An EHR system's right reaches its unit's contracts (it reports progress; that a system
    # is no person to sign is the contracts' rule). Acting for no unit, nothing; an auditor and
    # a booking platform have no right.
    ehr = decide(of_role("ehr", organization=UNIT_CLAIM), _SIGN, None)
    assert ehr.compartment == Compartment(organization=UNIT)
    assert denial(of_role("clinician"), _SIGN) is Denial.NO_ORGANIZATION
    assert denial(of_role("auditor"), _SIGN) is Denial.INSUFFICIENT_SCOPE
    assert denial(of_role("booking"), _SIGN) is Denial.INSUFFICIENT_SCOPE


_SIGN = Requirement("Provenance", "c")


@pytest.mark.parametrize(("resource_type", "permission"), [("CarePlan", "r"), ("Goal", "s")])
def test_an_auditor_reaches_no_clinical_data(resource_type: str, permission: Permission) -> None:
    requirement = Requirement(resource_type, permission)

    assert denial(of_role("auditor"), requirement) is Denial.INSUFFICIENT_SCOPE


@pytest.mark.parametrize(
    ("role", "resource_type"), [("clinician", "AuditEvent"), ("ehr", "Provenance")]
)
def test_a_care_units_token_reaches_no_audit_trail(role: Role, resource_type: str) -> None:
    requirement = Requirement(resource_type, "r")

    assert denial(of_role(role, organization=UNIT_CLAIM), requirement) is Denial.INSUFFICIENT_SCOPE


@pytest.mark.parametrize(
    ("scopes", "context"),
    [
        (["patient/CarePlan.rs", "system/CarePlan.rs"], "system"),
        (["system/CarePlan.rs", "patient/CarePlan.rs"], "system"),
        (["patient/CarePlan.rs", "user/CarePlan.rs"], "user"),
        (["user/CarePlan.rs", "system/CarePlan.rs", "patient/CarePlan.rs"], "system"),
    ],
)
def test_the_widest_context_wins_when_a_token_holds_several(
    scopes: list[str], context: Context
) -> None:
    who = principal(scopes, organization=UNIT_CLAIM, patient="personnummer|19390211-4689")

    access = decide(who, Requirement("CarePlan", "r"), PATIENT)

    assert access.context == context
    assert access.compartment == Compartment(organization=UNIT)


def test_a_system_booking_scope_beside_a_patient_scope_reaches_every_booking() -> None:
    who = principal(["patient/Appointment.rs", "system/Appointment.rs"])

    access = decide(who, Requirement("Appointment", "r"), PATIENT)

    assert (access.context, access.compartment) == ("system", Compartment())


def test_a_narrower_context_still_grants_what_only_it_allows() -> None:
    who = principal(["patient/CarePlan.cruds", "system/CarePlan.rs"], organization=UNIT_CLAIM)

    access = decide(who, Requirement("CarePlan", "u"), PATIENT)

    assert (access.context, access.compartment) == ("patient", Compartment(patient=PATIENT))


def test_adding_a_system_scope_without_organization_keeps_the_patient_grant() -> None:
    who = principal(["patient/CarePlan.rs", "system/CarePlan.rs"])

    access = decide(who, Requirement("CarePlan", "r"), PATIENT)

    assert access.compartment == Compartment(patient=PATIENT)


@pytest.mark.parametrize(
    "organization",
    [
        "hsa-id|nonsense",
        "hsa-id|",
        "personnummer|19121212-1212",
        "hpr-nummer|1234567",
        "nokind",
        "Organization/123",
        "no-such-kind|SE2321000065-1254",
        "urn:oid:1.2.752.29.4.19|nonsense",
    ],
)
@pytest.mark.parametrize(
    ("role", "requirement"),
    [
        ("clinician", Requirement("CarePlan", "r")),
        ("ehr", Requirement("CarePlan", "u")),
        ("booking", Requirement("Appointment", "r")),
        ("auditor", Requirement("AuditEvent", "r")),
    ],
)
def test_a_malformed_organization_claim_is_refused(
    role: Role, requirement: Requirement, organization: str
) -> None:
    assert denial(of_role(role, organization=organization), requirement) is Denial.BAD_CLAIM


UNIT_VALUE = "SE2321000065-1254"


@pytest.mark.parametrize(
    ("claim", "patient", "kind", "value"),
    [
        ("personnummer|19390211-4689", True, IdentifierKind.PERSONNUMMER, "193902114689"),
        ("personnummer|193902114689", True, IdentifierKind.PERSONNUMMER, "193902114689"),
        ("hsa-id|SE2321000065-1254", False, IdentifierKind.HSA_ID, "SE2321000065-1254"),
        ("hsa-id|se2321000065-1254", False, IdentifierKind.HSA_ID, "SE2321000065-1254"),
        ("organisasjonsnummer|974760673", False, IdentifierKind.ORGANISASJONSNUMMER, "974760673"),
        # The FHIR form an identity provider may issue: the identifier's system, not its kind.
        (
            "http://electronichealth.se/identifier/personnummer|193902114689",
            True,
            IdentifierKind.PERSONNUMMER,
            "193902114689",
        ),
        (
            "urn:oid:1.2.752.29.4.19|SE2321000065-1254",
            False,
            IdentifierKind.HSA_ID,
            "SE2321000065-1254",
        ),
    ],
)
def test_a_kind_and_value_claim_is_the_identifier_it_names(
    claim: str, patient: bool, kind: IdentifierKind, value: str
) -> None:
    assert claimed_identifier(claim, patient=patient) == Identifier(kind=kind, value=value)


@pytest.mark.parametrize(
    ("claim", "patient"),
    [
        ("personnummer|19390211-4688", True),
        ("personnummer|", True),
        ("hsa-id|nonsense", False),
        ("hsa-id|SE2321000065-1254", True),
        ("personnummer|19390211-4689", False),
        ("hpr-nummer|1234567", False),
        ("unknown|19390211-4689", True),
        ("|19390211-4689", True),
        ("http://electronichealth.se/identifier/personnummer|19390211-4688", True),
        ("urn:oid:1.2.752.29.4.19|SE2321000065-1254", True),
    ],
)
def test_a_claim_of_an_invalid_value_or_the_wrong_kind_is_refused(
    claim: str, patient: bool
) -> None:
    with pytest.raises(AccessDeniedError) as caught:
        claimed_identifier(claim, patient=patient)

    assert caught.value.denial is Denial.BAD_CLAIM
    assert str(caught.value) == Denial.BAD_CLAIM.value


def test_a_claim_is_checked_once_a_refusal_every_time_and_a_criterion_is_not_kept() -> None:
    claim = f"personnummer|{unique_personnummer()}"
    first = claimed_identifier(claim, patient=True)
    assert claimed_identifier(claim, patient=True) is first, "the checked claim was kept"
    for _ in range(2):
        with pytest.raises(AccessDeniedError):
            claimed_identifier(f"{claim[:-1]}x", patient=True)
    kept = access._claimed.cache_info().currsize

    assert identifier_named(f"personnummer|{unique_personnummer()}", patient=True) is not None
    assert access._claimed.cache_info().currsize == kept, "a request's criterion fills no cache"


@pytest.mark.parametrize(
    ("text", "patient", "named"),
    [
        ("personnummer|19390211-4689", True, PATIENT),
        ("hsa-id|SE2321000065-1254", False, UNIT),
        ("personnummer|19390211-4688", True, None),
        ("hsa-id|SE2321000065-1254", True, None),
        ("19390211-4689", True, None),
    ],
)
def test_a_criterion_names_an_identifier_or_none_never_a_refusal(
    text: str, patient: bool, named: Identifier | None
) -> None:
    assert identifier_named(text, patient=patient) == named


@pytest.mark.parametrize(("claim", "patient"), [("123", True), ("Patient-7", True), ("x", False)])
def test_a_claim_without_a_separator_is_not_an_identifier(claim: str, patient: bool) -> None:
    assert claimed_identifier(claim, patient=patient) is None


@pytest.mark.parametrize(
    ("compartment", "allowed"),
    [
        (Compartment(), True),
        (Compartment(patient=PATIENT), True),
        (
            Compartment(patient=Identifier(kind=IdentifierKind.PERSONNUMMER, value="193902114689")),
            True,
        ),
        (Compartment(organization=UNIT), True),
        (Compartment(organization=MUNICIPALITY), False),
        (
            Compartment(
                organization=Identifier(kind=IdentifierKind.HSA_ID, value="SE2321000065-9999")
            ),
            False,
        ),
        (Compartment(patient=PATIENT, organization=UNIT), True),
        (Compartment(patient=PATIENT, organization=MUNICIPALITY), False),
    ],
)
def test_a_compartment_allows_the_contracts_of_its_patient_or_responsible_unit(
    contract: Contract, compartment: Compartment, allowed: bool
) -> None:
    assert compartment.allows(contract) is allowed


def test_a_patient_compartment_does_not_allow_another_patients_contract(contract: Contract) -> None:
    other = Identifier(kind=IdentifierKind.PERSONNUMMER, value=unique_personnummer())

    assert other != PATIENT
    assert not Compartment(patient=other).allows(contract)


def test_the_example_contract_involves_the_municipality_it_is_not_responsible_for(
    contract: Contract,
) -> None:
    # The premise of the MUNICIPALITY row above: it takes part, yet may not see the contract.
    taking_part = {p.organization.identifier for p in contract.professionals} | {
        a.organization.identifier for a in contract.activities if a.organization is not None
    }

    assert MUNICIPALITY in taking_part
    assert contract.responsible_clinician.organization.identifier == UNIT
    assert contract.patient.identifier == PATIENT


def test_a_requirement_reads_as_type_and_permission() -> None:
    assert str(Requirement("CarePlan", "u")) == "CarePlan.u"


def test_a_patient_named_by_another_issuer_is_inside_no_patients_walls(
    contract: Contract,
) -> None:
    # The same digits as the patient's personnummer, issued by a hospital: not that person.
    mrn = Identifier(
        kind=IdentifierKind.OTHER, system="urn:oid:1.2.36.146.595.217.0.1", value="193902114689"
    )
    foreign = contract.model_copy(
        update={"patient": contract.patient.model_copy(update={"identifier": mrn})}
    )
    patient = decide(
        principal(["patient/CarePlan.rs"], patient="x"), Requirement("CarePlan", "r"), PATIENT
    )
    unit = decide(of_role("ehr", organization=UNIT_CLAIM), Requirement("CarePlan", "r"), None)

    assert not patient.compartment.allows(foreign)
    assert unit.compartment.allows(foreign), "its unit keeps it"
    with pytest.raises(AccessDeniedError):
        claimed_identifier(f"other|{mrn.value}", patient=True)
