"""The closed vocabularies of a contract: statuses, owners, kinds and parties."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ActivityOwner",
    "ActivityStatus",
    "AgreedTimeStatus",
    "AgreementParty",
    "CareContactKind",
    "Confidentiality",
    "ContractStatus",
    "GoalStatus",
    "OrganizationKind",
    "ProposalKind",
    "ProposalStatus",
    "Reporter",
]


class ContractStatus(StrEnum):
    """Where a contract is in its life."""

    DRAFT = "draft"
    AGREED = "agreed"
    REVISED = "revised"
    COMPLETED = "completed"
    ENDED = "ended"
    REVOKED = "revoked"


class ActivityOwner(StrEnum):
    """Who carries out an activity of the agreement."""

    PATIENT = "patient"
    CARE_UNIT = "care-unit"
    MUNICIPALITY = "municipality"
    RELATIVE = "relative"


class ActivityStatus(StrEnum):
    """Progress of one activity."""

    NOT_STARTED = "not-started"
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    STOPPED = "stopped"


class ProposalKind(StrEnum):
    """What a patient proposes: a goal, a resource or a wish of their own to add (or, naming
    one, a goal to change), or a change of an activity or an agreed time."""

    GOAL = "goal"
    RESOURCE = "resource"
    WISH = "wish"
    ACTIVITY = "activity"
    TIME = "time"


class ProposalStatus(StrEnum):
    """Where a patient's proposal stands with the care unit."""

    OPEN = "open"
    TAKEN = "taken"
    DECLINED = "declined"


class Reporter(StrEnum):
    """Who said how an activity goes: its owner, or the care."""

    PATIENT = "patient"
    RELATIVE = "relative"
    CARE_UNIT = "care-unit"


class GoalStatus(StrEnum):
    """Where one of the patient's goals stands."""

    PROPOSED = "proposed"
    ACTIVE = "active"
    ACHIEVED = "achieved"
    NOT_ACHIEVED = "not-achieved"
    CANCELLED = "cancelled"


class AgreedTimeStatus(StrEnum):
    """State of an agreed time (överenskommen tid)."""

    PROPOSED = "proposed"
    PENDING = "pending"
    """Held in a Slot for a while, for its holder to book (Appointment/$hold)."""
    BOOKED = "booked"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"


class OrganizationKind(StrEnum):
    """What kind of organization takes part: region and municipality may both."""

    REGION = "region"
    MUNICIPALITY = "municipality"
    CARE_UNIT = "care-unit"
    HEALTH_TRUST = "health-trust"


class CareContactKind(StrEnum):
    """The Swedish fast vårdkontakt or the Norwegian personlig koordinator."""

    FAST_VARDKONTAKT = "fast-vardkontakt"
    PERSONLIG_KOORDINATOR = "personlig-koordinator"


class AgreementParty(StrEnum):
    """Whose agreement a contract needs before it is agreed."""

    PATIENT = "patient"
    RESPONSIBLE_CLINICIAN = "responsible-clinician"


class Confidentiality(StrEnum):
    """How freely a contract, a goal or an agreed time may be shown (HL7 v3 Confidentiality).

    Restricted and very restricted content is kept from the patient's own view and from other
    care units' view of the coherent plan; only the responsible unit sees it.
    """

    NORMAL = "normal"
    RESTRICTED = "restricted"
    VERY_RESTRICTED = "very-restricted"
