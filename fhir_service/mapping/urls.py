"""Our canonical URLs: identifier systems for contract-owned records, extensions, profiles."""

from __future__ import annotations

__all__ = [
    "BASE",
    "CS_CARE_GUARANTEE_STEP",
    "CS_TIME_TYPE",
    "EXT_ACTIVITY_CONFIDENTIALITY",
    "EXT_ACTIVITY_OWNER",
    "EXT_APPOINTMENT_HOLD",
    "EXT_CARE_GUARANTEE",
    "EXT_CONTRACT_RECORD",
    "EXT_CONTRACT_STATUS",
    "EXT_GUARANTEE_VERDICT",
    "EXT_NOTE_KIND",
    "EXT_ONLINE_RULES",
    "EXT_PATIENT_PROPOSAL",
    "EXT_PATIENT_REVIEW",
    "EXT_REQUESTED_BY_PATIENT",
    "EXT_RESPONSIBLE_UNIT",
    "EXT_TIME_TYPE_RULES",
    "ID_AGREED_TIME",
    "ID_CARE_TEAM",
    "ID_CONTRACT",
    "ID_CONTRACT_VERSION",
    "ID_GOAL",
    "ID_HEALTHCARE_SERVICE",
    "ID_PRACTITIONER_ROLE",
    "ID_RECORD",
    "ID_RELATED_PERSON",
    "ID_SCHEDULE",
    "ID_SLOT",
    "ID_TIME_TYPE",
    "POLICY_AGREEMENT_ATTESTED",
    "PROFILE_APPOINTMENT",
    "PROFILE_CAREPLAN",
    "PROFILE_CARETEAM",
    "PROFILE_TIME_TYPE",
    "TAG_AGREEMENT",
    "TAG_CREATED",
    "TAG_NOT_PROPOSED",
    "TAG_SIGNATURE",
    "TAG_WRITE_KEY",
]

BASE = "http://fhir.patient-contracts.org"

ID_CONTRACT = f"{BASE}/identifier/contract"
ID_CONTRACT_VERSION = f"{BASE}/identifier/contract-version"
ID_GOAL = f"{BASE}/identifier/goal"
ID_AGREED_TIME = f"{BASE}/identifier/agreed-time"
ID_CARE_TEAM = f"{BASE}/identifier/care-team"
ID_RELATED_PERSON = f"{BASE}/identifier/related-person"
ID_PRACTITIONER_ROLE = f"{BASE}/identifier/practitioner-role"
ID_HEALTHCARE_SERVICE = f"{BASE}/identifier/healthcare-service"
ID_SCHEDULE = f"{BASE}/identifier/schedule"
ID_SLOT = f"{BASE}/identifier/slot"
ID_TIME_TYPE = f"{BASE}/identifier/time-type"
"""A care unit's time type (a HealthcareService): ``<unit kind>:<unit value>/<code>``."""
ID_RECORD = f"{BASE}/identifier/record"
"""A record a sender's plan holds that is none of a contract's parts (a Condition, an
Encounter, ...): ``<contract id>/<key>``."""

CS_TIME_TYPE = f"{BASE}/CodeSystem/time-type"
CS_CARE_GUARANTEE_STEP = f"{BASE}/CodeSystem/care-guarantee-step"

TAG_AGREEMENT = f"{BASE}/tag/agreement"
TAG_SIGNATURE = f"{BASE}/tag/signature"
"""Tags one party's own signature of a version not yet agreed (a hash of the party, the contract
and the contents signed): signing again finds it and records no second one."""
TAG_NOT_PROPOSED = f"{BASE}/tag/not-proposed"
"""Tags the CarePlan of a draft the care unit has not put to the patient (code ``draft``): what a
patient's search leaves out, since HAPI cannot tell a draft put to them from one that was not."""
TAG_CREATED = f"{BASE}/tag/contract-created"
"""Tags the Provenance of a contract's creation (the contract id): there is one per contract."""
TAG_WRITE_KEY = f"{BASE}/tag/write-key"
"""Tags the Provenance of a change made under an ``Idempotency-Key`` (a hash of the key)."""

EXT_CONTRACT_STATUS = f"{BASE}/StructureDefinition/contract-status"
EXT_ACTIVITY_OWNER = f"{BASE}/StructureDefinition/activity-owner"
EXT_ACTIVITY_CONFIDENTIALITY = f"{BASE}/StructureDefinition/activity-confidentiality"
EXT_NOTE_KIND = f"{BASE}/StructureDefinition/note-kind"
EXT_REQUESTED_BY_PATIENT = f"{BASE}/StructureDefinition/requested-by-patient"
EXT_CARE_GUARANTEE = f"{BASE}/StructureDefinition/care-guarantee"
EXT_GUARANTEE_VERDICT = f"{BASE}/StructureDefinition/care-guarantee-verdict"
EXT_APPOINTMENT_HOLD = f"{BASE}/StructureDefinition/appointment-hold"
EXT_CONTRACT_RECORD = f"{BASE}/StructureDefinition/contract-record"
EXT_RESPONSIBLE_UNIT = f"{BASE}/StructureDefinition/responsible-unit"
EXT_PATIENT_REVIEW = f"{BASE}/StructureDefinition/patient-review"
EXT_PATIENT_PROPOSAL = f"{BASE}/StructureDefinition/patient-proposal"
EXT_TIME_TYPE_RULES = f"{BASE}/StructureDefinition/time-type-rules"
EXT_ONLINE_RULES = f"{BASE}/StructureDefinition/appointment-online-rules"

POLICY_AGREEMENT_ATTESTED = f"{BASE}/policy/agreement-attested"
"""Provenance.policy of an agreement given elsewhere (on paper, in the sending EHR) and attested
by the responsible unit's system: its signatures are the unit's, on the parties' behalf."""

PROFILE_CAREPLAN = f"{BASE}/StructureDefinition/patient-contract-careplan"
PROFILE_CARETEAM = f"{BASE}/StructureDefinition/care-contact-careteam"
PROFILE_APPOINTMENT = f"{BASE}/StructureDefinition/agreed-time-appointment"
PROFILE_TIME_TYPE = f"{BASE}/StructureDefinition/time-type-healthcareservice"
