"""The roles the service knows, as the SMART scopes and claims a token of each role carries.

Real tokens come from the region's identity provider; this table is what `fhir-service token`
mints for local development and what the tests use, and documents what each role needs.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

__all__ = ["ROLE_SCOPES", "Role", "claims_for"]

Role = Literal["clinician", "ehr", "booking", "patient", "relative", "auditor"]

_CONTRACT_TYPES = ("CarePlan", "CareTeam", "Goal", "Appointment", "Subscription")
# A care unit's staff and EHR publish the unit's bookable times.
_CLINIC_TYPES = (*_CONTRACT_TYPES, "Slot", "Schedule")
# What a contract's records name, read to follow their references: the patient and their
# relatives (within the caller's walls), and the directory of professionals and units.
_DIRECTORY = ("Practitioner", "PractitionerRole", "Organization", "HealthcareService")
_NAMED = ("Patient", "RelatedPerson", *_DIRECTORY)

ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    # A clinician in an EHR, acting for their care unit (the ``organization`` claim).
    "clinician": (
        *(f"user/{t}.cruds" for t in _CLINIC_TYPES),
        *(f"user/{t}.rs" for t in _NAMED),
        # A party's own acts on a contract, each recorded by its Provenance: signing in their
        # own name, reporting progress.
        "user/Provenance.c",
    ),
    # An EHR system integrating on its own account, for one care unit.
    "ehr": (
        *(f"system/{t}.cruds" for t in _CLINIC_TYPES),
        *(f"system/{t}.rs" for t in _NAMED),
        # Reporting how the unit's activities go; a system signs nothing (no person).
        "system/Provenance.c",
        # The unit's time types, each a HealthcareService: what the clinic decides.
        "system/HealthcareService.cud",
    ),
    # A booking platform: bookable times and appointments, never care plans.
    "booking": (
        "system/Slot.rs",
        "system/Schedule.rs",
        "system/Appointment.cruds",
        *(f"system/{t}.rs" for t in _DIRECTORY),
    ),
    # A patient, reading their own contracts, signing or declining what is put to them,
    # reporting on their own activities, and booking their own times.
    "patient": (
        "patient/CarePlan.rs",
        "patient/Provenance.c",
        "patient/CareTeam.rs",
        "patient/Goal.rs",
        "patient/Appointment.cruds",
        "patient/Slot.rs",
        "patient/Subscription.cruds",
        # Leave for relatives to read the plan: FHIR Consents the patient grants and revokes.
        "patient/Consent.crus",
        "patient/Patient.rs",
        "patient/RelatedPerson.rs",
        "patient/Schedule.rs",
        *(f"patient/{t}.rs" for t in _DIRECTORY),
    ),
    # A relative with the patient's leave (a Consent in force; the token's fhirUser names their
    # RelatedPerson): the patient's plan as the patient sees it, and reports on the activities
    # the relative owns when the leave allows.
    "relative": (
        "patient/CarePlan.rs",
        "patient/CareTeam.rs",
        "patient/Goal.rs",
        "patient/Appointment.rs",
        "patient/Patient.rs",
        "patient/RelatedPerson.rs",
        "patient/Provenance.c",
        *(f"patient/{t}.rs" for t in _DIRECTORY),
    ),
    # An auditor: the audit trail and the provenance of changes, read only.
    "auditor": ("user/AuditEvent.rs", "user/Provenance.rs"),
}


def claims_for(
    role: Role,
    *,
    issuer: str,
    audience: str,
    subject: str,
    organization: str | None = None,
    patient: str | None = None,
    fhir_user: str | None = None,
    client_id: str = "fhir-service-cli",
    lifetime_seconds: int = 3600,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of a token for ``role``; ``organization`` and ``patient`` as ``kind|value``,
    ``fhir_user`` as SMART's ``fhirUser`` (a relative's ``RelatedPerson/<id>``)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "client_id": client_id,
        "scope": " ".join(ROLE_SCOPES[role]),
        "iat": issued,
        "exp": issued + lifetime_seconds,
        "jti": uuid.uuid4().hex,
    }
    if organization is not None:
        claims["organization"] = organization
    if patient is not None:
        claims["patient"] = patient
    if fhir_user is not None:
        claims["fhirUser"] = fhir_user
    return claims
