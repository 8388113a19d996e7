"""The coherent plan (sammanhållen plan): one patient's contracts with every provider, as one.

Each care unit keeps its own contract with the patient; the plan lays them side by side: who
does what (the patient's own part first), the patient's goals, the fast vårdkontakt or personlig
koordinator to turn to, and the agreed times still to come. Every item names the contract it
comes from, so a reader can go to the source.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from fhir_service.contract.model import (
    Activity,
    AgreedTime,
    CareContact,
    Contract,
    ContractId,
    Goal,
    Identifier,
    Name,
    Organization,
    Period,
    Professional,
    Proposal,
)
from fhir_service.contract.time_types import Language, TimeTypes
from fhir_service.contract.vocabulary import (
    ActivityOwner,
    AgreedTimeStatus,
    AgreementParty,
    ContractStatus,
)

__all__ = [
    "PLAN_STATUSES",
    "ActivityGroup",
    "CoherentPlan",
    "ContractSummary",
    "PlannedActivity",
    "PlannedCareContact",
    "PlannedGoal",
    "PlannedProposal",
    "PlannedTime",
    "awaits_patient",
    "coherent_plan",
]

PLAN_STATUSES = (ContractStatus.AGREED, ContractStatus.REVISED)
"""The contracts in force: agreed, or agreed and being revised (the agreed version holds)."""

# Who does what, in the order a patient reads it: their own part first.
_OWNER_ORDER = (
    ActivityOwner.PATIENT,
    ActivityOwner.RELATIVE,
    ActivityOwner.CARE_UNIT,
    ActivityOwner.MUNICIPALITY,
)
_COMING = frozenset({AgreedTimeStatus.PROPOSED, AgreedTimeStatus.BOOKED})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContractSummary(_Model):
    """One contract the plan draws on, and the unit (and clinician) responsible for it."""

    id: ContractId
    version: int | None
    status: ContractStatus
    title: str
    period: Period | None
    responsible_clinician: Professional | None
    responsible_unit: Organization


class PlannedActivity(Activity):
    """An activity of one of the contracts."""

    contract_id: ContractId
    relative_name: Name | None = Field(
        default=None, description="The relative who carries it out, when the owner is one."
    )
    relative_identifier: Identifier | None = Field(
        default=None,
        description="That relative's national identifier, when the contract names it: the "
        "relative whose leave lets them report on it.",
    )


class ActivityGroup(_Model):
    """Everything one kind of party does, across the contracts."""

    owner: ActivityOwner
    activities: tuple[PlannedActivity, ...]


class PlannedGoal(Goal):
    """A goal of the patient's, from one of the contracts."""

    contract_id: ContractId


class PlannedCareContact(CareContact):
    """A fast vårdkontakt or personlig koordinator the patient has now."""

    contract_id: ContractId


class PlannedTime(AgreedTime):
    """An agreed time still to come (proposed, or booked and not yet over)."""

    contract_id: ContractId
    time_type_names: dict[Language, str] | None = Field(
        default=None,
        description="What its care unit calls the time's type, in sv, nb and en, as the unit "
        "defined it; none without a type the unit defined.",
    )


class PlannedProposal(Proposal):
    """A change the patient proposed to one of the contracts, and where it stands."""

    contract_id: ContractId


class CoherentPlan(_Model):
    """The patient's contracts in force, laid side by side."""

    patient: Identifier
    name: Name | None = Field(
        description="The patient's name as the latest contract has it; none without contracts."
    )
    contracts: tuple[ContractSummary, ...]
    activities: tuple[ActivityGroup, ...] = Field(
        description="By owner: the patient, relatives, care units, municipalities."
    )
    goals: tuple[PlannedGoal, ...]
    care_contacts: tuple[PlannedCareContact, ...]
    upcoming_times: tuple[PlannedTime, ...] = Field(
        description="Soonest first; proposed times without a date come last."
    )
    awaiting_patient: tuple[ContractSummary, ...] = Field(
        default=(),
        description="Versions the care has put to the patient that the patient has neither "
        "signed nor declined: a draft, or a revision of a contract in force.",
    )
    proposals: tuple[PlannedProposal, ...] = Field(
        default=(),
        description="The patient's proposals, on contracts in force or put to them, newest "
        "first: open, taken or declined with the care's reason.",
    )
    withheld: bool = Field(
        description="True when something of the patient's contracts is not shown to this "
        "reader (a draft, or content labelled restricted); what it is, is not said."
    )


def coherent_plan(
    patient: Identifier,
    contracts: Iterable[Contract],
    *,
    now: datetime,
    withheld: bool,
    types: TimeTypes | None = None,
) -> CoherentPlan:
    """The plan of ``patient`` from ``contracts`` (already what the reader may see).

    ``now`` (timezone-aware) decides which agreed times are still to come and which care
    contacts hold today. ``types``, the units' time types, name each time's type and give a
    time booked without online rules (in the clinic's own system) its type's rules now.
    """
    contracts = tuple(contracts)
    shown = [c for c in contracts if c.status in PLAN_STATUSES]
    today = now.date()
    groups = []
    for owner in _OWNER_ORDER:
        activities = tuple(
            _activity(contract, activity)
            for contract in shown
            for activity in contract.activities
            if activity.owner is owner
        )
        if activities:
            groups.append(ActivityGroup(owner=owner, activities=activities))
    times = [
        _planned(contract.id, time, types)
        for contract in shown
        for time in contract.agreed_times
        if time.status in _COMING and (time.end is None or time.end >= now)
    ]
    times.sort(key=lambda t: (t.start is None, t.start or now))
    return CoherentPlan(
        patient=patient,
        name=shown[-1].patient.name if shown else None,
        contracts=tuple(_summary(c) for c in shown),
        activities=tuple(groups),
        goals=tuple(
            PlannedGoal(**goal.model_dump(), contract_id=contract.id)
            for contract in shown
            for goal in contract.goals
        ),
        care_contacts=tuple(
            PlannedCareContact(**contact.model_dump(), contract_id=contract.id)
            for contract in shown
            for contact in contract.care_contacts
            if contact.period is None
            or (contact.period.start or today) <= today <= (contact.period.end or today)
        ),
        upcoming_times=tuple(times),
        awaiting_patient=tuple(_summary(c) for c in contracts if awaits_patient(c)),
        proposals=tuple(
            sorted(
                (
                    PlannedProposal(**proposal.model_dump(), contract_id=contract.id)
                    for contract in contracts
                    for proposal in contract.proposals
                ),
                key=lambda p: p.proposed_at,
                reverse=True,
            )
        ),
        withheld=withheld,
    )


def awaits_patient(contract: Contract) -> bool:
    """Whether the care has put this version to the patient, and the patient has neither
    signed nor declined it yet."""
    review = contract.patient_review
    return (
        review is not None
        and review.declined_at is None
        and all(s.party is not AgreementParty.PATIENT for s in contract.signatures)
    )


def _summary(contract: Contract) -> ContractSummary:
    return ContractSummary(
        id=contract.id,
        version=contract.version,
        status=contract.status,
        title=contract.title,
        period=contract.period,
        responsible_clinician=contract.responsible_clinician,
        responsible_unit=contract.responsible_unit,
    )


def _activity(contract: Contract, activity: Activity) -> PlannedActivity:
    relative = next((r for r in contract.relatives if r.key == activity.relative), None)
    return PlannedActivity(
        **activity.model_dump(),
        contract_id=contract.id,
        relative_name=None if relative is None else relative.name,
        relative_identifier=None if relative is None else relative.identifier,
    )


def _planned(contract_id: str, time: AgreedTime, types: TimeTypes | None) -> PlannedTime:
    kind = None
    if types is not None and time.time_type is not None:
        kind = types.known(time.organization.identifier).get(time.time_type)
    planned = PlannedTime(**time.model_dump(), contract_id=contract_id)
    if kind is None:
        return planned
    rules = time.online_rules
    if rules is None and time.status is AgreedTimeStatus.BOOKED:
        rules = kind.online_rules  # booked in the clinic's own system: its type's rules now
    return planned.model_copy(update={"time_type_names": kind.names, "online_rules": rules})
