"""Whole patient contracts, varied in every part the mapping touches.

Shared records (patients, professionals, organizations) are written once and then found by
identifier, so across examples one identifier must always come with the same details: those are
derived from the identifier. Everything the contract owns (activities, goals, notes, relatives,
times, agreements) is drawn freely.
"""

from __future__ import annotations

import zlib
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import strategies as st

from fhir_service.contract import (
    Activity,
    ActivityOwner,
    ActivityStatus,
    AgreedTime,
    AgreedTimeStatus,
    Agreement,
    AgreementParty,
    CareContact,
    CareContactKind,
    CareGuaranteeCase,
    Confidentiality,
    Contact,
    Contract,
    ContractStatus,
    Goal,
    GoalStatus,
    GuaranteeVerdict,
    Hold,
    Identifier,
    Name,
    Organization,
    OrganizationKind,
    Patient,
    PatientReview,
    Period,
    Professional,
    ProgressReport,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Relative,
    Reporter,
    Schedule,
)
from fhir_service.contract.identifiers import IdentifierKind
from fhir_service.mapping.tables import code_table, relationships
from tests.strategies import identifiers as ids

__all__ = ["contracts", "texts"]

_FAMILY = ["Andersson", "Ødegård", "Lind", "Åberg", "Nilsen", "Öberg", "Strand", "Bjørnstad"]
_GIVEN = ["Åsa", "Øyvind", "Karin", "Lars", "Ingrid", "Mustafa", "Nils-Erik", "Siv"]
_UNIT_NAMES = ["Ortopedmottagningen", "Hemsjukvården", "Geriatrisk klinikk", "Vårdcentralen Ö"]


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text a person might type, any script: no control characters, not blank."""
    characters = st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")
    )
    return st.text(characters, min_size=1, max_size=max_size).map(str.strip).filter(bool)


def _pick(options: list[str], seed: str, salt: str = "") -> str:
    return options[zlib.crc32(f"{salt}{seed}".encode()) % len(options)]


def _name_for(seed: str) -> Name:
    return Name(family=_pick(_FAMILY, seed), given=(_pick(_GIVEN, seed, "g"),))


def _organization(kind: IdentifierKind, value: str) -> Organization:
    kinds = list(OrganizationKind)
    return Organization(
        identifier=Identifier(kind=kind, value=value),
        name=f"{_pick(_UNIT_NAMES, value)} {value[-4:]}",
        kind=kinds[zlib.crc32(value.encode()) % len(kinds)],
    )


def _professional(kind: IdentifierKind, value: str, organization: Organization) -> Professional:
    roles = [c for c in code_table("care-team-role").names if c not in _FUNCTIONS]
    contacts = (Contact(system="phone", value=f"+46 {value[-6:]}"),) if value[-1] in "02468" else ()
    return Professional(
        identifier=Identifier(kind=kind, value=value),
        name=_name_for(value),
        role=_pick(roles, value),
        organization=organization,
        contacts=contacts,
    )


_FUNCTIONS = {"responsible-clinician", "fast-vardkontakt", "personlig-koordinator", "relative"}

_confidentiality = st.sampled_from(list(Confidentiality))
_keys = st.from_regex(r"\A[a-z0-9][a-z0-9\-.]{0,12}\Z")
_dates = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
_offsets = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=2))])


@st.composite
def _periods(draw: st.DrawFn) -> Period:
    start = draw(st.none() | _dates)
    end = draw(_dates if start is None else st.none() | _dates)
    if start and end and end < start:
        start, end = end, start
    return Period(start=start, end=end)


@st.composite
def _instants(draw: st.DrawFn) -> datetime:
    moment = draw(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)))
    return moment.replace(microsecond=0, tzinfo=UTC).astimezone(draw(_offsets))


@st.composite
def _organizations(draw: st.DrawFn) -> list[Organization]:
    swedish = draw(st.lists(ids.hsa_id(), min_size=0, max_size=2, unique=True))
    norwegian = draw(st.lists(ids.organisasjonsnummer(), min_size=0, max_size=2, unique=True))
    orgs = [_organization(IdentifierKind.HSA_ID, v) for v in swedish]
    orgs += [_organization(IdentifierKind.ORGANISASJONSNUMMER, v) for v in norwegian]
    if not orgs:
        orgs.append(_organization(IdentifierKind.HSA_ID, draw(ids.hsa_id())))
    return orgs


@st.composite
def contracts(draw: st.DrawFn) -> Contract:
    """A valid contract in any status, with 0 to a few of every part."""
    organizations = draw(_organizations())
    prof_ids = draw(
        st.lists(
            st.one_of(
                ids.hsa_id().map(lambda v: (IdentifierKind.HSA_ID, v)),
                ids.hpr_nummer().map(lambda v: (IdentifierKind.HPR_NUMMER, v)),
            ),
            min_size=1,
            max_size=4,
            unique_by=lambda kv: kv[1],
        )
    )
    # One organization per professional, derived from the identifier so it never varies.
    pool = [
        _professional(kind, value, organizations[zlib.crc32(value.encode()) % len(organizations)])
        for kind, value in prof_ids
    ]
    patient_kind, patient_value = draw(
        st.one_of(
            ids.personnummer().map(lambda v: (IdentifierKind.PERSONNUMMER, v)),
            ids.samordningsnummer().map(lambda v: (IdentifierKind.SAMORDNINGSNUMMER, v)),
            ids.fodselsnummer().map(lambda v: (IdentifierKind.FODSELSNUMMER, v)),
            ids.d_nummer().map(lambda v: (IdentifierKind.D_NUMMER, v)),
        )
    )
    relatives = draw(
        st.lists(
            st.builds(
                Relative,
                key=_keys,
                name=st.builds(Name, family=texts(), given=st.tuples(texts())),
                relationship=st.sampled_from(sorted(relationships().names)),
                contacts=st.tuples()
                | st.tuples(st.builds(Contact, system=st.just("email"), value=texts())),
            ),
            max_size=2,
            unique_by=lambda r: r.key,
        )
    )
    status = draw(st.sampled_from(list(ContractStatus)))
    agreements: tuple[Agreement, ...] = ()
    if status is ContractStatus.AGREED:
        # Signed here, or given elsewhere and attested by the unit's system.
        attested = draw(st.booleans())
        agreements = tuple(
            Agreement(party=party, agreed_at=draw(_instants()), attested=attested)
            for party in AgreementParty
        )
    review = None
    if status in (ContractStatus.DRAFT, ContractStatus.REVISED):
        # Put to the patient, and perhaps declined with their comment.
        review = draw(
            st.none()
            | st.builds(
                PatientReview,
                proposed_at=_instants(),
                declined_at=st.none() | _instants(),
                comment=st.none() | texts(200),
            )
        )
    # A plan from another EHR may name only the unit responsible for it.
    clinician = draw(st.none() | st.sampled_from(pool))
    unit = clinician.organization if clinician else draw(st.sampled_from(organizations))
    return Contract(
        id=draw(st.uuids()).hex,
        status=status,
        patient_review=review,
        proposals=tuple(draw(st.lists(_proposals(), max_size=2, unique_by=lambda p: p.key))),
        confidentiality=draw(_confidentiality),
        care_guarantee=draw(st.none() | _guarantee_cases()),
        title=draw(texts(80)),
        language=draw(st.none() | st.sampled_from(["sv", "nb", "en", "sv-SE", "nn", "de"])),
        period=draw(st.none() | _periods()),
        patient=Patient(
            identifier=Identifier(kind=patient_kind, value=patient_value),
            name=_name_for(patient_value),
        ),
        responsible_clinician=clinician,
        responsible_unit=unit,
        professionals=tuple(draw(st.lists(st.sampled_from(pool), max_size=3, unique=True))),
        relatives=tuple(relatives),
        care_contacts=tuple(draw(st.lists(_care_contacts(pool), max_size=2))),
        activities=tuple(draw(_activities(organizations, relatives))),
        goals=tuple(
            draw(
                st.lists(
                    st.builds(
                        Goal,
                        key=_keys,
                        description=texts(200),
                        status=st.sampled_from(list(GoalStatus)),
                        due=st.none() | _dates,
                        confidentiality=_confidentiality,
                    ),
                    max_size=3,
                    unique_by=lambda g: g.key,
                )
            )
        ),
        patient_resources=tuple(draw(st.lists(texts(200), max_size=2))),
        wishes=tuple(draw(st.lists(texts(200), max_size=2))),
        agreed_times=tuple(draw(_agreed_times(organizations, pool))),
        agreements=agreements,
    )


@st.composite
def _care_contacts(draw: st.DrawFn, pool: list[Professional]) -> CareContact:
    return CareContact(
        kind=draw(st.sampled_from(list(CareContactKind))),
        professional=draw(st.sampled_from(pool)),
        how_to_reach=draw(st.none() | texts(120)),
        period=draw(st.none() | _periods()),
        requested_by_patient=draw(st.booleans()),
    )


@st.composite
def _activities(
    draw: st.DrawFn, organizations: list[Organization], relatives: list[Relative]
) -> list[Activity]:
    owners = [o for o in ActivityOwner if relatives or o is not ActivityOwner.RELATIVE]
    keys = draw(st.lists(_keys, max_size=4, unique=True))
    activities = []
    for key in keys:
        owner = draw(st.sampled_from(owners))
        organization = relative = None
        if owner in (ActivityOwner.CARE_UNIT, ActivityOwner.MUNICIPALITY):
            organization = draw(st.sampled_from(organizations))
        elif owner is ActivityOwner.RELATIVE:
            relative = draw(st.sampled_from(relatives)).key
        schedule = draw(
            st.none()
            | st.builds(
                Schedule,
                frequency=st.integers(1, 10),
                period=st.integers(1, 4),
                unit=st.sampled_from(["d", "wk", "mo", "a"]),
            )
        )
        activities.append(
            Activity(
                key=key,
                owner=owner,
                category=draw(st.sampled_from(sorted(code_table("activity-category").names))),
                description=draw(texts(200)),
                status=draw(st.sampled_from(list(ActivityStatus))),
                period=draw(st.none() | _periods()),
                schedule=schedule,
                organization=organization,
                relative=relative,
                confidentiality=draw(_confidentiality),
                progress=draw(st.none() | _progress(owner)),
            )
        )
    return activities


@st.composite
def _proposals(draw: st.DrawFn) -> Proposal:
    # What the patient asked, about a key of the contract when it asks a change, and what the
    # unit made of it.
    kind = draw(st.sampled_from(list(ProposalKind)))
    about = None
    if kind in (ProposalKind.ACTIVITY, ProposalKind.TIME) or (
        kind is ProposalKind.GOAL and draw(st.booleans())
    ):
        about = draw(_keys)
    status = draw(st.sampled_from(list(ProposalStatus)))
    return Proposal(
        key=draw(_keys),
        kind=kind,
        text=draw(texts(200)),
        about=about,
        proposed_at=draw(_instants()),
        status=status,
        reason=draw(texts(200)) if status is ProposalStatus.DECLINED else None,
    )


def _progress(owner: ActivityOwner) -> st.SearchStrategy[ProgressReport]:
    # Reported by its owner, when a person, or by the care unit.
    reporters = [Reporter.CARE_UNIT]
    if owner is ActivityOwner.PATIENT:
        reporters.append(Reporter.PATIENT)
    if owner is ActivityOwner.RELATIVE:
        reporters.append(Reporter.RELATIVE)
    return st.builds(
        ProgressReport,
        reported_at=_instants(),
        by=st.sampled_from(reporters),
        note=st.none() | texts(200),
    )


@st.composite
def _agreed_times(
    draw: st.DrawFn, organizations: list[Organization], pool: list[Professional]
) -> list[AgreedTime]:
    times = []
    for key in draw(st.lists(_keys, max_size=3, unique=True)):
        status = draw(st.sampled_from(list(AgreedTimeStatus)))
        start = end = None
        if status is not AgreedTimeStatus.PROPOSED or draw(st.booleans()):
            start = draw(_instants())
            end = start + timedelta(minutes=draw(st.integers(5, 240)))
        # A time's professional works at the time's unit, as their shared role record says.
        professional = draw(st.none() | st.sampled_from(pool))
        organization = (
            professional.organization if professional else draw(st.sampled_from(organizations))
        )
        times.append(
            AgreedTime(
                key=key,
                description=draw(texts(120)),
                status=status,
                start=start,
                end=end,
                organization=organization,
                professional=professional,
                confidentiality=draw(_confidentiality),
                # No time type: generated units publish none (mappings/booking/time-types.json).
                # No slot: HAPI holds a Slot reference only to a Slot that exists; the booking
                # tests publish real ones.
                cancellation_reason=draw(st.none() | texts(80))
                if status is AgreedTimeStatus.CANCELLED
                else None,
                care_guarantee=draw(st.none() | _verdicts()) if start else None,
                hold=Hold(until=draw(_instants()), holder=draw(texts(60)))
                if status is AgreedTimeStatus.PENDING
                else None,
            )
        )
    return times


@st.composite
def _verdicts(draw: st.DrawFn) -> GuaranteeVerdict:
    days_over = draw(st.integers(0, 400))
    return GuaranteeVerdict(deadline=draw(_instants()), late=days_over > 0, days_over=days_over)


@st.composite
def _guarantee_cases(draw: st.DrawFn) -> CareGuaranteeCase:
    jurisdiction = draw(st.sampled_from(["SE", "NO"]))
    steps = {"SE": ["contact", "assessment", "specialist-visit", "treatment"]}
    step = draw(
        st.sampled_from(steps.get(jurisdiction, ["referral-assessment", "treatment-start"]))
    )
    since = draw(_instants())
    deadline = since.date() + timedelta(days=draw(st.integers(1, 365)))
    return CareGuaranteeCase(
        jurisdiction=jurisdiction,
        step=step,
        since=since,
        deadline=deadline if step == "treatment-start" else None,
    )
