"""Access decisions: may this principal do this to this resource type, and within which walls.

A route needs a `Requirement` (a resource type and one SMART permission). `decide` grants it from
the token's scopes, deny by default, and returns an `Access` whose `Compartment` limits what the
grant reaches:

- ``patient/`` scopes reach only the patient the token names;
- ``user/`` scopes (a clinician) and ``system/`` scopes (an EHR system) reach the contracts of
  the care unit the token names in ``organization``; without one they reach no clinical data;
- ``system/`` scopes on booking types (Slot, Schedule, Appointment) without an organization are
  a booking platform's, which serves every clinic;
- AuditEvent and Provenance are an auditor's to read: never limited to a compartment, and never
  written; but a party signing a contract in their own name creates a Provenance (its
  signature), within the walls of the contracts they may see, like any contract write;
- the directory (practitioners, their roles, organizations, services) is no patient data:
  ``system/`` scopes on it without an organization read it whole.

When a token holds several contexts for the type, the widest wins (system, then user, then
patient): scopes add up, they never narrow each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from fhir_service.contract import Contract, Identifier, IdentifierKind, InvalidIdentifierError
from fhir_service.errors import ForbiddenError
from fhir_service.mapping.identifier_systems import kind_for
from fhir_service.security.scopes import Context, Permission, Scope, granted, parse_scopes
from fhir_service.security.tokens import Principal

__all__ = [
    "AUDIT_TYPES",
    "Access",
    "AccessDeniedError",
    "Compartment",
    "Denial",
    "Leave",
    "Requirement",
    "claimed_identifier",
    "decide",
    "identifier_named",
]

AUDIT_TYPES = frozenset({"AuditEvent", "Provenance"})
_BOOKING_TYPES = frozenset({"Slot", "Schedule", "Appointment"})
_DIRECTORY_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "Organization", "HealthcareService"}
)
_WIDEST_FIRST: tuple[Context, ...] = ("system", "user", "patient")
_PATIENT_KINDS = frozenset(
    {
        IdentifierKind.PERSONNUMMER,
        IdentifierKind.SAMORDNINGSNUMMER,
        IdentifierKind.FODSELSNUMMER,
        IdentifierKind.D_NUMMER,
    }
)
_ORGANIZATION_KINDS = frozenset({IdentifierKind.HSA_ID, IdentifierKind.ORGANISASJONSNUMMER})


class Denial(StrEnum):
    """Why access was refused; the value is safe to show the caller."""

    INSUFFICIENT_SCOPE = "the token's scopes do not allow this"
    NO_PATIENT = "a patient-scoped token must name its patient"
    NO_ORGANIZATION = "this token must name the care unit it acts for"
    READ_ONLY = "audit records are read only"
    BAD_CLAIM = "the token's patient or organization is not a valid identifier"
    OUTSIDE_COMPARTMENT = "the token does not reach this patient's or care unit's data"
    NOT_THEIR_ACTIVITY = (
        "a patient or a relative reports on their own activities; the care's are the care "
        "unit's to report"
    )
    NO_REPORTING = "the patient's leave lets this relative read the plan, not report on it"
    ONLY_THE_PATIENT = (
        "proposals are the patient's own words; the care unit changes the contract itself"
    )
    NO_LEAVE = "the patient has given this relative no leave that is in force now"
    ONLY_THE_PATIENT_ACTS = (
        "a relative reads the plan and reports on their own activities, as the patient allows; "
        "signing, proposing and granting are the patient's"
    )
    NOT_FROM_PAGE = (
        "the form did not come from the patient's own page: its form token is missing, "
        "expired or another person's"
    )
    NOT_A_PERSON = (
        "a signature is a person's own act: sign with the patient's or a clinician's own token; "
        "an agreement given elsewhere is recorded with agree"
    )


class AccessDeniedError(ForbiddenError):
    """The principal may not do what it asked; ``denial`` says why."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.value)
        self.denial = denial
        self.refusal = denial.value


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route needs: one permission on one resource type."""

    resource_type: str
    permission: Permission

    def __str__(self) -> str:
        return f"{self.resource_type}.{self.permission}"


@dataclass(frozen=True, slots=True)
class Compartment:
    """The walls of a grant: one patient, one care unit, or none (unrestricted)."""

    patient: Identifier | None = None
    organization: Identifier | None = None

    def allows(self, contract: Contract) -> bool:
        """Whether ``contract`` lies inside these walls.

        A care unit's contracts are those it is responsible for (it is the contract's
        responsible unit): each unit keeps its own contract with the patient.
        """
        if self.patient is not None and contract.patient.identifier != self.patient:
            return False
        unit = contract.responsible_unit.identifier
        return self.organization is None or unit == self.organization


@dataclass(frozen=True, slots=True)
class Leave:
    """A relative's leave from the patient, in force now (a FHIR ``Consent``): who the relative
    is (their ``RelatedPerson`` and national identifier), and whether they may report on the
    activities they own besides reading the plan."""

    consent_id: str
    related_person: str
    relative: Identifier | None
    may_report: bool


@dataclass(frozen=True, slots=True)
class Access:
    """A granted requirement: who, in which context, within which compartment; for a relative
    acting under the patient's leave, that leave (the patient's walls, and what the patient
    alone may do is not theirs)."""

    principal: Principal
    requirement: Requirement
    context: Context
    compartment: Compartment
    leave: Leave | None = None


def decide(principal: Principal, requirement: Requirement, patient: Identifier | None) -> Access:
    """Grant ``requirement`` to ``principal`` or raise `AccessDeniedError`.

    ``patient`` is the token's patient as an identifier, already resolved by the caller when
    the token names a FHIR Patient id rather than an identifier.
    """
    kind = requirement.resource_type
    if kind in AUDIT_TYPES and not _audit_read(requirement) and not _signing(requirement):
        raise AccessDeniedError(Denial.READ_ONLY)
    contexts = granted(_scopes_of(principal.scopes), kind, requirement.permission)
    if not contexts:
        raise AccessDeniedError(Denial.INSUFFICIENT_SCOPE)
    refusal = Denial.INSUFFICIENT_SCOPE
    for context in (c for c in _WIDEST_FIRST if c in contexts):
        try:
            return _grant(principal, requirement, context, patient)
        except AccessDeniedError as exc:
            # A wider context this token cannot use must not hide a narrower one it can.
            refusal = exc.denial
    raise AccessDeniedError(refusal)


def _grant(
    principal: Principal, requirement: Requirement, context: Context, patient: Identifier | None
) -> Access:
    kind = requirement.resource_type
    if context == "patient":
        if patient is None:
            raise AccessDeniedError(Denial.NO_PATIENT)
        return Access(principal, requirement, context, Compartment(patient=patient))
    organization = _organization(principal)
    if organization is not None and not _audit_read(requirement):
        return Access(principal, requirement, context, Compartment(organization=organization))
    unwalled = context == "system" and kind in _BOOKING_TYPES | _DIRECTORY_TYPES
    if _audit_read(requirement) or unwalled:
        return Access(principal, requirement, context, Compartment())
    raise AccessDeniedError(Denial.NO_ORGANIZATION)


def _audit_read(requirement: Requirement) -> bool:
    return requirement.resource_type in AUDIT_TYPES and requirement.permission in ("r", "s")


def _signing(requirement: Requirement) -> bool:
    return requirement.resource_type == "Provenance" and requirement.permission == "c"


@lru_cache(maxsize=1024)
def _scopes_of(raw: frozenset[str]) -> tuple[Scope, ...]:
    # A token's every request asks with the same scopes: parsed once for each set, not each time.
    return parse_scopes(raw)


def claimed_identifier(text: str, *, patient: bool) -> Identifier | None:
    """A token claim ``kind|value`` or FHIR ``system|value`` as an identifier of a patient or a
    care unit.

    None when the claim is not in that form (a patient claim may be a FHIR Patient id instead);
    `AccessDeniedError` when it is, but names the wrong kind or an invalid value.
    """
    return _claimed(text, patient)


def _identifier(text: str, patient: bool) -> Identifier | None:
    kind, separator, value = text.rpartition("|")
    if not separator:
        return None
    kinds = _PATIENT_KINDS if patient else _ORGANIZATION_KINDS
    try:
        identifier = Identifier(kind=kind_for(kind) or IdentifierKind(kind), value=value)
    except (ValueError, InvalidIdentifierError):
        raise AccessDeniedError(Denial.BAD_CLAIM) from None
    if identifier.kind not in kinds:
        raise AccessDeniedError(Denial.BAD_CLAIM)
    return identifier


# A token's claims are read again on each of its requests: an identifier's checks (check digits,
# dates of birth) run once for each claim. A refusal raises, and is not kept. Only claims: what
# a request names (identifier_named) would let any caller fill it.
_claimed = lru_cache(maxsize=4096)(_identifier)


def identifier_named(text: str, *, patient: bool) -> Identifier | None:
    """The patient or care unit ``text`` names (``kind|value`` or ``system|value``); None when
    it names none: a request's criterion, where a bad one is the caller's mistake, not a claim."""
    try:
        return _identifier(text, patient)
    except AccessDeniedError:
        return None


def _organization(principal: Principal) -> Identifier | None:
    if principal.organization is None:
        return None
    identifier = claimed_identifier(principal.organization, patient=False)
    if identifier is None:
        raise AccessDeniedError(Denial.BAD_CLAIM)
    return identifier
