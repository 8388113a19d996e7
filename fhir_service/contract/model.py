"""The patient contract (patientkontrakt, individuell plan) as a domain model.

Four parts: the agreement (activities, goals, the patient's resources and wishes), the fixed care
contact (fast vårdkontakt, or personlig koordinator in Norway), the agreed times, and the coherent
plan that ties them together across the organizations taking part. Pure Python: nothing here
knows FHIR or HTTP. Models are immutable; the lifecycle (``lifecycle.py``) returns new ones.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from fhir_service.contract.identifiers import IdentifierKind, InvalidIdentifierError, normalize
from fhir_service.contract.vocabulary import (
    ActivityOwner,
    ActivityStatus,
    AgreedTimeStatus,
    AgreementParty,
    CareContactKind,
    Confidentiality,
    ContractStatus,
    GoalStatus,
    OrganizationKind,
    ProposalKind,
    ProposalStatus,
    Reporter,
)

__all__ = [
    "Activity",
    "AgreedTime",
    "Agreement",
    "CareContact",
    "Contact",
    "Contract",
    "Goal",
    "Hold",
    "Identifier",
    "Name",
    "OnlineRules",
    "Organization",
    "Patient",
    "PatientReview",
    "Period",
    "Professional",
    "ProgressReport",
    "Proposal",
    "Relative",
    "Schedule",
    "ShortText",
    "Signature",
    "Text",
]

# FHIR strings may not carry control characters other than tab and line breaks, and the XHTML
# narrative cannot hold surrogates or U+FFFE/U+FFFF; rejecting them here gives the caller a
# precise error instead of a failed write to HAPI later.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _printable(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4000),
    AfterValidator(_printable),
]
"""Free text a person wrote: trimmed, not empty, at most 4000 characters."""

Key = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$")]
"""A local id inside one contract (activity, goal, time, relative): letters, digits, - and ."""

LanguageTag = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8}){0,4}$")]
"""A BCP 47 language tag, as FHIR's ``language`` takes it: sv, nb, sv-SE."""

ContractId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9\-.]{0,63}$")]
"""The contract's business id, unique across all contracts."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


_PATIENT_KINDS = frozenset(
    {
        IdentifierKind.PERSONNUMMER,
        IdentifierKind.SAMORDNINGSNUMMER,
        IdentifierKind.FODSELSNUMMER,
        IdentifierKind.D_NUMMER,
        # A patient another country's plan names: never inside a patient's walls, which
        # tokens draw by national identifier.
        IdentifierKind.OTHER,
    }
)
_PROFESSIONAL_KINDS = frozenset({IdentifierKind.HSA_ID, IdentifierKind.HPR_NUMMER})
_ORGANIZATION_KINDS = frozenset({IdentifierKind.HSA_ID, IdentifierKind.ORGANISASJONSNUMMER})


SystemUri = Annotated[str, StringConstraints(pattern=r"^(urn:[a-z0-9-]+:|https?://)\S{1,250}$")]
"""The issuer of an identifier of kind ``other``: a URI, as FHIR's ``Identifier.system``."""


class Identifier(_Model):
    """A national identifier; the value is checked (check digits, format) and normalized.
    An identifier of kind ``other`` names its issuer in ``system`` instead."""

    kind: IdentifierKind
    system: SystemUri | None = Field(
        default=None, validate_default=True, exclude_if=lambda system: system is None
    )
    value: str

    @field_validator("system")
    @classmethod
    def _system_of_other_only(cls, system: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if (kind is IdentifierKind.OTHER) != (system is not None) and kind is not None:
            raise ValueError("is given for an identifier of kind other, and only then")
        return system

    @field_validator("value")
    @classmethod
    def _normalized(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is None:
            return value  # the kind's own error is reported
        try:
            return normalize(kind, value)
        except InvalidIdentifierError as exc:
            raise ValueError(str(exc)) from None


def _identifier_of(allowed: frozenset[IdentifierKind], what: str) -> AfterValidator:
    def check(identifier: Identifier) -> Identifier:
        if identifier.kind not in allowed:
            kinds = ", ".join(sorted(allowed))
            raise ValueError(f"{identifier.kind} does not identify {what}; use one of {kinds}")
        return identifier

    return AfterValidator(check)


class Name(_Model):
    """A person's name."""

    family: Text
    given: tuple[Text, ...] = ()


class Contact(_Model):
    """One way to reach someone."""

    system: Literal["phone", "email", "sms", "url", "other"]
    value: Text


class Period(_Model):
    """From a start to an end date, either may be open."""

    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start is None and self.end is None:
            raise ValueError("a period needs a start or an end")
        if self.start and self.end and self.end < self.start:
            raise ValueError("end is before start")
        return self


class Schedule(_Model):
    """A recurring activity: ``frequency`` times every ``period`` ``unit``s, e.g. 3 per 1 week."""

    frequency: int = Field(ge=1, le=1000)
    period: int = Field(ge=1, le=1000)
    unit: Literal["d", "wk", "mo", "a"]


class Organization(_Model):
    """A region, municipality, care unit or health trust taking part."""

    identifier: Annotated[Identifier, _identifier_of(_ORGANIZATION_KINDS, "an organization")]
    name: Text
    kind: OrganizationKind


class Patient(_Model):
    """The patient the contract is for."""

    identifier: Annotated[Identifier, _identifier_of(_PATIENT_KINDS, "a patient")]
    name: Name


class Professional(_Model):
    """A health or social care professional acting for an organization in this contract."""

    identifier: Annotated[Identifier, _identifier_of(_PROFESSIONAL_KINDS, "a professional")]
    name: Name
    role: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z\-]{0,63}$")]
    organization: Organization
    contacts: tuple[Contact, ...] = ()


class Relative(_Model):
    """A relative (närstående, pårørende) taking part, as the patient wishes."""

    key: Key
    identifier: Annotated[Identifier, _identifier_of(_PATIENT_KINDS, "a relative")] | None = Field(
        default=None, description="The relative's own personnummer, fødselsnummer, ..., if known."
    )
    name: Name
    relationship: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,10}$")]
    contacts: tuple[Contact, ...] = ()


class CareContact(_Model):
    """The fixed care contact: a named person, the unit, how to reach them, for which period."""

    kind: CareContactKind
    professional: Professional
    how_to_reach: Text | None = None
    period: Period | None = None
    requested_by_patient: bool = False


ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_printable),
]
"""A short note a person wrote: trimmed, not empty, at most 500 characters."""


class ProgressReport(_Model):
    """How an activity goes, as it was last reported: the activity's status is what it says,
    this is who said it, when, and their note. Progress is no term of the agreement: reporting
    it needs no new one."""

    reported_at: AwareDatetime
    by: Reporter
    note: ShortText | None = None


class Activity(_Model):
    """Something one party does: the patient, the care unit, the municipality or a relative."""

    key: Key
    owner: ActivityOwner
    category: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z\-]{0,63}$")]
    description: Text
    status: ActivityStatus = ActivityStatus.NOT_STARTED
    period: Period | None = None
    schedule: Schedule | None = None
    organization: Organization | None = None
    relative: Key | None = None
    goals: tuple[Key, ...] = Field(
        default=(), description="The keys of the contract's goals this activity serves."
    )
    confidentiality: Confidentiality = Field(
        default=Confidentiality.NORMAL,
        description="Of this activity alone (a suicide-risk assessment, ...): a restricted "
        "activity is withheld from the patient and other units, as a restricted goal is.",
    )
    progress: ProgressReport | None = Field(
        default=None,
        description="The last report of how it goes (its status), by whom and when. Set by the "
        "progress report; left out when none.",
    )

    @model_serializer(mode="wrap")
    def _progress_when_reported(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # Said only once reported, so an activity's form is as it was before reports.
        data = handler(self)
        if self.progress is None:
            data.pop("progress", None)
        return data

    @model_validator(mode="after")
    def _performer_fits_owner(self) -> Self:
        needs_org = self.owner in (ActivityOwner.CARE_UNIT, ActivityOwner.MUNICIPALITY)
        if needs_org != (self.organization is not None):
            raise ValueError(
                "organization is required when the owner is the care unit or the municipality,"
                " and only then"
            )
        if (self.owner is ActivityOwner.RELATIVE) != (self.relative is not None):
            raise ValueError("relative is required when the owner is a relative, and only then")
        reporter = None if self.progress is None else self.progress.by
        if reporter in (Reporter.PATIENT, Reporter.RELATIVE) and reporter != self.owner.value:
            raise ValueError(f"progress: the {reporter} reports only on their own activities")
        return self


class Goal(_Model):
    """One of the patient's goals, in their own words."""

    key: Key
    description: Text
    status: GoalStatus = GoalStatus.ACTIVE
    due: date | None = None
    confidentiality: Confidentiality = Confidentiality.NORMAL


class CareGuaranteeCase(_Model):
    """Where the patient is on their way into care, and since when: the clock the care
    guarantee (vårdgaranti; Norway's juridisk frist) runs on for this contract's times."""

    jurisdiction: Literal["SE", "NO"]
    step: Key = Field(
        description="The step of mappings/booking/care-guarantee.json the patient waits for, "
        "e.g. specialist-visit; agreed times of time types counting towards it are checked."
    )
    since: AwareDatetime = Field(description="When the count started (the referral, ...).")
    deadline: date | None = Field(
        default=None, description="A deadline set for this patient (Norway's juridisk frist)."
    )


class GuaranteeVerdict(_Model):
    """How a booked time stands against the care guarantee, recorded when it was booked."""

    deadline: AwareDatetime
    late: bool
    days_over: int = Field(ge=0)


class Hold(_Model):
    """An agreed time held in a Slot while its holder (a booking platform, the patient)
    confirms: theirs to book until ``until``, then free for anyone. Set by the service's
    ``$hold``; never taken from a write of the contract."""

    until: AwareDatetime
    holder: Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(
        description="Who holds it: the holding token's issuer and subject."
    )


class OnlineRules(_Model):
    """The clinic's rules for changing a booked time online, as they were when it was booked."""

    cancel: bool
    rebook: bool
    cancel_cutoff_hours: int = Field(ge=0, le=8760)

    @property
    def cancel_cutoff(self) -> timedelta:
        """How long before its start a patient may still cancel or rebook the time online."""
        return timedelta(hours=self.cancel_cutoff_hours)


class AgreedTime(_Model):
    """A time agreed with the patient: a time in hand, or one booked online."""

    key: Key
    description: Text
    status: AgreedTimeStatus = AgreedTimeStatus.PROPOSED
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    organization: Organization
    professional: Professional | None = None
    confidentiality: Confidentiality = Confidentiality.NORMAL
    time_type: Key | None = Field(
        default=None,
        description="The care unit's time type, as the unit defined it: what a "
        "booking platform offers the patient to book this time as.",
    )
    slot: Key | None = Field(
        default=None,
        description="The bookable time (FHIR Slot id) this time was booked from, when it was "
        "booked through the booking facade; such a time is cancelled or rebooked there.",
    )
    cancellation_reason: Text | None = Field(
        default=None, description="Why a cancelled time was cancelled, in the canceller's words."
    )
    care_guarantee: GuaranteeVerdict | None = Field(
        default=None,
        description="Set when the time was booked against the contract's care guarantee: "
        "its deadline, and whether the time is past it.",
    )
    hold: Hold | None = Field(
        default=None,
        description="A pending time's hold: until when, and by whom. Set by the service; left "
        "out when none.",
    )
    online_rules: OnlineRules | None = Field(
        default=None,
        description="A time booked through the booking facade: the clinic's rules for changing "
        "it online as they were when it was booked (a later change of its time type applies to "
        "times booked afterwards). Set by the service; left out when none.",
    )

    @model_serializer(mode="wrap")
    def _service_parts_when_set(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # Said only when set, so a time's form is as it was before holds and online rules.
        data = handler(self)
        if self.hold is None:
            data.pop("hold", None)
        if self.online_rules is None:
            data.pop("online_rules", None)
        return data

    @model_validator(mode="after")
    def _times(self) -> Self:
        if (self.status is AgreedTimeStatus.PENDING) != (self.hold is not None):
            raise ValueError("a pending time has a hold, and only a pending time has one")
        if self.status is not AgreedTimeStatus.PROPOSED and (
            self.start is None or self.end is None
        ):
            raise ValueError(f"a {self.status} time needs start and end")
        if self.start and self.end and self.end <= self.start:
            raise ValueError("end is not after start")
        return self


class Agreement(_Model):
    """One party's agreement to the current version, with when it was given."""

    party: AgreementParty
    agreed_at: AwareDatetime
    attested: bool = Field(
        default=False,
        description="Given elsewhere (on paper, in the sending EHR) and attested by the "
        "responsible unit's system, not signed through this service: the Provenance says so.",
    )


class Signature(_Model):
    """One party's own signature of the contents of a version not yet agreed, given by their own
    authenticated act (the patient's token, a clinician's). It holds while those contents do: a
    change in between voids it. Set by the service; never taken from a write."""

    party: AgreementParty
    signed_at: AwareDatetime
    version: int = Field(
        description="The version signed; later versions of the same contents keep it."
    )


class PatientReview(_Model):
    """The care unit has put this version to the patient for their agreement ("awaiting the
    patient"), and the patient's answer when they declined. Set by the service through the
    propose and sign steps; never taken from a write."""

    proposed_at: AwareDatetime
    declined_at: AwareDatetime | None = None
    comment: Text | None = Field(
        default=None, description="Why the patient declined, in their own words."
    )


class Proposal(_Model):
    """A change the patient asks for in their own words, for the care unit to take into the
    next version or decline with a reason the patient sees. Set by the service; never taken
    from a write of the contract."""

    key: Key
    kind: ProposalKind
    text: Text
    about: Key | None = Field(
        default=None,
        description="The goal, activity or agreed time it asks to change; none for a new goal, "
        "resource or wish.",
    )
    proposed_at: AwareDatetime
    status: ProposalStatus = ProposalStatus.OPEN
    reason: Text | None = Field(
        default=None, description="Why the care unit declined it, for the patient to read."
    )

    @model_validator(mode="after")
    def _about_fits_kind(self) -> Self:
        changes = self.kind in (ProposalKind.ACTIVITY, ProposalKind.TIME)
        if changes and self.about is None:
            raise ValueError(f"about: a change of an {self.kind} names it")
        if self.kind in (ProposalKind.RESOURCE, ProposalKind.WISH) and self.about is not None:
            raise ValueError(f"about: a {self.kind} is added, not changed")
        if (self.status is ProposalStatus.DECLINED) != (self.reason is not None):
            raise ValueError("reason: a declined proposal says why, and only a declined one")
        return self


MAX_PROFESSIONALS = 50
MAX_RELATIVES = 20
MAX_CARE_CONTACTS = 20
MAX_ACTIVITIES = 200
MAX_GOALS = 100
MAX_NOTES = 100
MAX_AGREED_TIMES = 200
"""How much one contract may hold, checked before anything is stored.

A contract is read back in one search whose includes HAPI stops loading near 1000 resources,
and written in one transaction HAPI must finish well within the service's time-out: at these
limits a contract is some 600 resources at most, and a care plan for one patient needs far
fewer (the seed scenarios hold under 30). Larger ones are refused with a 422 naming the list.
"""


def _unit_not_required(schema: dict[str, Any]) -> None:
    # Derived from the clinician when not given, and said only when it is not theirs.
    schema["required"] = [name for name in schema["required"] if name != "responsible_unit"]


class Contract(_Model):
    """A patient contract: the four parts and who takes part, in one version."""

    model_config = ConfigDict(**_Model.model_config, json_schema_extra=_unit_not_required)

    id: ContractId
    version: int | None = Field(default=None, description="Set by the store; None before saving.")
    status: ContractStatus = ContractStatus.DRAFT
    confidentiality: Confidentiality = Field(
        default=Confidentiality.NORMAL,
        description="Of the whole contract; goals and agreed times may be labelled on their own.",
    )
    title: Text
    description: Text | None = Field(
        default=None, description="What the plan is for, in the words of whoever wrote it."
    )
    period: Period | None = None
    patient: Patient
    responsible_clinician: Professional | None = Field(
        default=None,
        description="The clinician responsible for the contract, when the plan names one: a "
        "plan from another EHR may name only the unit.",
    )
    responsible_unit: Organization = Field(
        description="The unit responsible for the contract, whose walls it lies within. Not "
        "given, the responsible clinician's organization."
    )
    language: LanguageTag | None = Field(
        default=None,
        validate_default=True,
        description="The language the contract is written in, a BCP 47 tag (sv, nb, sv-SE, ...):"
        " its narrative is written in it. Not given, the responsible unit's country's: sv for an"
        " HSA-id, nb for an organisasjonsnummer.",
    )
    professionals: tuple[Professional, ...] = Field(default=(), max_length=MAX_PROFESSIONALS)
    relatives: tuple[Relative, ...] = Field(default=(), max_length=MAX_RELATIVES)
    care_contacts: tuple[CareContact, ...] = Field(default=(), max_length=MAX_CARE_CONTACTS)
    activities: tuple[Activity, ...] = Field(default=(), max_length=MAX_ACTIVITIES)
    goals: tuple[Goal, ...] = Field(default=(), max_length=MAX_GOALS)
    patient_resources: tuple[Text, ...] = Field(default=(), max_length=MAX_NOTES)
    wishes: tuple[Text, ...] = Field(default=(), max_length=MAX_NOTES)
    agreed_times: tuple[AgreedTime, ...] = Field(default=(), max_length=MAX_AGREED_TIMES)
    care_guarantee: CareGuaranteeCase | None = None
    agreements: tuple[Agreement, ...] = ()
    patient_review: PatientReview | None = Field(
        default=None,
        description="Set while the version is put to the patient (a draft or a revision): "
        "awaiting their agreement, or declined with their comment. Left out when not.",
    )
    proposals: tuple[Proposal, ...] = Field(
        default=(),
        max_length=MAX_NOTES,
        description="What the patient asked to change, and what became of it. Left out when none.",
    )
    signatures: tuple[Signature, ...] = Field(
        default=(),
        description="The parties' own signatures of this version's contents while it is not "
        "yet agreed; both make it agreed. Left out when none.",
    )
    sent: SkipJsonSchema[dict[str, dict[str, Any]] | None] = Field(
        default=None,
        exclude=True,
        repr=False,
        description="What the sending system wrote about the contract's records beyond these "
        "fields, kept to be given back as it was: opaque here, set by the FHIR mapping "
        "only (never validated from input), and no part of the JSON form. None: nothing said "
        "(a JSON client's change), and what is stored stays.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _unit_of_clinician(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Most contracts name their clinician, and the clinician's unit is the responsible one.
        unit = None
        if isinstance(data, dict) and data.get("responsible_unit") is None:
            clinician = data.get("responsible_clinician")
            if isinstance(clinician, Professional):
                unit = clinician.organization
            elif isinstance(clinician, dict):
                unit = clinician.get("organization")
        if unit is None:
            return handler(data)
        try:
            return handler({**data, "responsible_unit": unit})
        except ValidationError as exc:
            # What is wrong with the unit is said once, where the caller wrote it.
            errors = [e for e in exc.errors() if e["loc"][:1] != ("responsible_unit",)]
            raise ValidationError.from_exception_data(exc.title, errors) from None  # type: ignore[arg-type]

    @model_serializer(mode="wrap")
    def _unit_said_once(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        # A unit that is its clinician's is said by the clinician, as a client writes it; a
        # client changing the clinician need not change the unit too. (Not annotated: the
        # schema stays the model's.)
        data = handler(self)
        # Said only while a version is being agreed, so a contract's form is as it was before.
        if self.patient_review is None:
            data.pop("patient_review", None)
        if not self.signatures:
            data.pop("signatures", None)
        if not self.proposals:
            data.pop("proposals", None)
        clinician = self.responsible_clinician
        if clinician is not None and clinician.organization == self.responsible_unit:
            data.pop("responsible_unit", None)
        return data

    @field_validator("sent")
    @classmethod
    def _not_given(cls, value: dict[str, dict[str, Any]] | None) -> None:
        # Set by the FHIR mapping after validation (model_copy); never taken from a caller.
        if value is not None:
            raise ValueError("is not a field of the contract")
        return

    @field_validator("language")
    @classmethod
    def _unit_language(cls, value: str | None, info: ValidationInfo) -> str | None:
        unit = info.data.get("responsible_unit")
        if value is not None or unit is None:
            return value  # said, or the unit's own error is reported
        return _language_of_unit(unit)

    def unit_language(self) -> str:
        """The language of the responsible unit's country: a contract's when it says none."""
        return _language_of_unit(self.responsible_unit)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _unique("activities", [a.key for a in self.activities])
        _unique("goals", [g.key for g in self.goals])
        _unique("agreed_times", [t.key for t in self.agreed_times])
        _unique("relatives", [r.key for r in self.relatives])
        _unique("agreements", [a.party for a in self.agreements])
        _unique("signatures", [s.party for s in self.signatures])
        _unique("proposals", [p.key for p in self.proposals])
        relatives = {r.key for r in self.relatives}
        goals = {g.key for g in self.goals}
        for activity in self.activities:
            if activity.relative is not None and activity.relative not in relatives:
                raise ValueError(
                    f"activity {activity.key}: no relative with key {activity.relative}"
                )
            for goal in activity.goals:
                if goal not in goals:
                    raise ValueError(f"activity {activity.key}: no goal with key {goal}")
        clinician = self.responsible_clinician
        if clinician is not None and clinician.organization != self.responsible_unit:
            raise ValueError("responsible_unit: is not the responsible clinician's organization")
        self._same_details_for_same_identifier()
        self._agreements_fit_status()
        return self

    def _agreements_fit_status(self) -> None:
        # Agreements belong to the version in force; once it is revised or closed they live on
        # only in the version history (Provenance), not in the contract.
        parties = {a.party for a in self.agreements}
        if self.status is ContractStatus.AGREED and parties != set(AgreementParty):
            missing = ", ".join(sorted(set(AgreementParty) - parties))
            raise ValueError(f"an agreed contract needs the agreement of: {missing}")
        if self.status is not ContractStatus.AGREED and self.agreements:
            raise ValueError(
                f"{_article(self.status)} {self.status} contract carries no agreements"
            )
        being_agreed = self.status in (ContractStatus.DRAFT, ContractStatus.REVISED)
        if not being_agreed and (self.signatures or self.patient_review is not None):
            raise ValueError(
                f"{_article(self.status)} {self.status} contract is not put to anyone's "
                "agreement: it carries no signatures and no review by the patient"
            )

    def organizations(self) -> tuple[Organization, ...]:
        """Every organization taking part, once each, in order of appearance."""
        seen: dict[Identifier, Organization] = {}
        for organization in self._all_organizations():
            seen.setdefault(organization.identifier, organization)
        return tuple(seen.values())

    def all_professionals(self) -> tuple[Professional, ...]:
        """The responsible clinician, the other professionals, care contacts and times' staff."""
        professionals = [self.responsible_clinician] if self.responsible_clinician else []
        professionals += self.professionals
        professionals += [c.professional for c in self.care_contacts]
        professionals += [t.professional for t in self.agreed_times if t.professional]
        return tuple(professionals)

    def _same_details_for_same_identifier(self) -> None:
        # People, organizations and a person's role at an organization are shared records,
        # written once and found by identifier: one identifier, one set of details.
        seen: dict[object, object] = {}
        for professional in self.all_professionals():
            _same(seen, ("person", professional.identifier), professional.name, "professional")
            at_unit = ("role", professional.identifier, professional.organization.identifier)
            role = (professional.role, professional.contacts)
            _same(seen, at_unit, role, "professional at one organization")
        for organization in self._all_organizations():
            details = (organization.name, organization.kind)
            _same(seen, ("organization", organization.identifier), details, "organization")

    def _all_organizations(self) -> list[Organization]:
        orgs = [self.responsible_unit, *(p.organization for p in self.all_professionals())]
        orgs += [a.organization for a in self.activities if a.organization]
        orgs += [t.organization for t in self.agreed_times]
        return orgs


def _language_of_unit(unit: Organization) -> str:
    norwegian = unit.identifier.kind is IdentifierKind.ORGANISASJONSNUMMER
    return "nb" if norwegian else "sv"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _unique(field: str, keys: list[str]) -> None:
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"{field}: duplicate key {', '.join(duplicates)}")


def _same(
    seen: dict[object, object],
    key: tuple[str, Identifier] | tuple[str, Identifier, Identifier],
    details: object,
    what: str,
) -> None:
    if seen.setdefault(key, details) != details:
        identifier = key[1]
        raise ValueError(
            f"{what} {identifier.kind} {identifier.value} appears with different details"
        )
