"""FHIR resources read back from HAPI → the contract they hold.

The inverse of ``to_fhir``: given the CarePlan of a contract and everything it points at (one
search with the includes in :data:`READ_PARAMS`), rebuild the contract, with the CarePlan's
server version as the contract's version. Resources that do not fit (a missing include, a code
we do not know) raise :class:`UnreadableContractError` naming what is wrong.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from fhir_service.contract import (
    Activity,
    AgreedTime,
    Agreement,
    AgreementParty,
    CareContact,
    Contact,
    Contract,
    Goal,
    GoalStatus,
    Identifier,
    Name,
    Organization,
    Period,
    Professional,
    Relative,
    Schedule,
)
from fhir_service.mapping import elements as element
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import kind_for
from fhir_service.mapping.tables import code_table

__all__ = ["READ_PARAMS", "UnreadableContractError", "contract_from_bundle"]

Resource = dict[str, Any]

READ_PARAMS: list[tuple[str, str]] = [
    ("_include", "CarePlan:subject"),
    ("_include", "CarePlan:care-team"),
    ("_include", "CarePlan:goal"),
    ("_include", "CarePlan:activity-reference"),
    ("_include", "CarePlan:performer"),
    ("_include:iterate", "CareTeam:participant"),
    ("_include:iterate", "Appointment:actor"),
    ("_include:iterate", "PractitionerRole:practitioner"),
    ("_include:iterate", "PractitionerRole:organization"),
    ("_include:iterate", "HealthcareService:organization"),
    # Agreements only (profiles/searchparameters/provenance-agreement-target.json): the
    # Provenance of every other change targets the CarePlan too, and a contract's history
    # must not make every read of it larger.
    ("_revinclude", "Provenance:agreement-target"),
]
"""Search parameters that bring a contract's CarePlan and all it refers to in one request."""

_GOAL_STATUS: dict[tuple[str, str | None], GoalStatus] = {
    ("proposed", None): GoalStatus.PROPOSED,
    ("active", None): GoalStatus.ACTIVE,
    ("completed", "achieved"): GoalStatus.ACHIEVED,
    ("completed", "not-achieved"): GoalStatus.NOT_ACHIEVED,
    ("cancelled", None): GoalStatus.CANCELLED,
}


class UnreadableContractError(ValueError):
    """The resources do not hold a contract this service wrote, or one is missing."""


def contract_from_bundle(bundle: Resource, contract_id: str | None = None) -> Contract:
    """The contract held by ``bundle``: a search result read from HAPI, or our own transaction.

    ``contract_id`` picks one contract when the Bundle holds several; without it the Bundle
    must hold exactly one.
    """
    entries = bundle.get("entry") or []
    if bundle.get("resourceType") != "Bundle" or not isinstance(entries, list):
        raise UnreadableContractError("not a FHIR Bundle with entries")
    reader = _Reader(entries)
    if contract_id is None:
        ids = [
            i["value"]
            for r in reader.resources
            if r.get("resourceType") == "CarePlan"
            for i in r.get("identifier", [])
            if i.get("system") == urls.ID_CONTRACT
        ]
        if len(ids) != 1:
            raise UnreadableContractError(f"the Bundle holds {len(ids)} contracts, not one")
        contract_id = ids[0]
    try:
        return reader.contract(contract_id)
    except ValidationError as exc:
        # The messages only: the error's own text quotes the stored data, patient included.
        reasons = "; ".join(str(error["msg"]) for error in exc.errors()[:3])
        raise UnreadableContractError(f"contract {contract_id!r}: {reasons}") from exc
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise UnreadableContractError(
            f"contract {contract_id!r}: a resource lacks an element the mapping needs ({exc!r})"
        ) from exc


class _Reader:
    def __init__(self, entries: list[Resource]) -> None:
        self.resources = [e["resource"] for e in entries if isinstance(e.get("resource"), dict)]
        self.by_ref: dict[str, Resource] = {}
        self.full_urls: dict[int, str] = {}
        for entry in entries:
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue
            if "id" in resource:
                self.by_ref[f"{resource['resourceType']}/{resource['id']}"] = resource
            if "fullUrl" in entry and str(entry["fullUrl"]).startswith("urn:"):
                # Our own transaction Bundle refers by fullUrl, before the server gave ids.
                self.by_ref[entry["fullUrl"]] = resource
                self.full_urls[id(resource)] = entry["fullUrl"]

    def resolve(self, reference: Resource | None) -> Resource:
        """The resource ``reference`` points at (by id, versioned or not, or by fullUrl); {}."""
        ref = str((reference or {}).get("reference", ""))
        return self.by_ref.get(ref.split("/_history/")[0], {})

    def get(self, reference: Resource | None, expected: str) -> Resource:
        ref = (reference or {}).get("reference", "")
        target = self.resolve(reference)
        if target.get("resourceType") != expected:
            raise UnreadableContractError(f"{expected} {ref!r} is missing from the resources")
        return target

    def contract(self, contract_id: str) -> Contract:
        careplan = next(
            (
                r
                for r in self.resources
                if r["resourceType"] == "CarePlan" and _has_id(r, urls.ID_CONTRACT, contract_id)
            ),
            None,
        )
        if careplan is None:
            raise UnreadableContractError(f"no CarePlan for contract {contract_id!r}")
        version_id = careplan.get("meta", {}).get("versionId")
        version = int(version_id) if version_id is not None else None
        patient = self.get(careplan.get("subject"), "Patient")
        teams = [self.get(t, "CareTeam") for t in careplan.get("careTeam", [])]
        if not teams:
            raise UnreadableContractError("the CarePlan has no care team")
        team, contact_teams = teams[0], teams[1:]
        professionals, relatives = self._team(team, contract_id)
        activities = [a for a in careplan.get("activity", []) if "detail" in a]
        appointments = [
            self.get(a["reference"], "Appointment")
            for a in careplan.get("activity", [])
            if "reference" in a
        ]
        notes = careplan.get("note", [])
        status = _extension(careplan, urls.EXT_CONTRACT_STATUS)["valueCoding"]["code"]
        agreements = self.agreements(careplan, version)
        if status == "agreed" and not agreements:
            # Only a writer that changed an agreed contract without revising it gets here.
            raise UnreadableContractError(
                f"CarePlan version {version} is marked agreed, but no agreement targets it"
            )
        return Contract(
            id=contract_id,
            version=version,
            status=status,
            title=careplan["title"],
            period=_period(careplan.get("period")),
            patient={"identifier": _identifier(patient), "name": _name(patient["name"][0])},
            responsible_clinician=self.professional(
                self.get(careplan.get("author"), "PractitionerRole")
            ),
            professionals=tuple(professionals),
            relatives=tuple(relatives),
            care_contacts=tuple(self.care_contact(t) for t in contact_teams),
            activities=tuple(self.activity(a, contract_id) for a in activities),
            goals=tuple(
                self.goal(self.get(g, "Goal"), contract_id) for g in careplan.get("goal", [])
            ),
            patient_resources=tuple(
                n["text"] for n in notes if _note_kind(n) == "patient-resource"
            ),
            wishes=tuple(n["text"] for n in notes if _note_kind(n) == "wish"),
            agreed_times=tuple(self.agreed_time(a, contract_id) for a in appointments),
            agreements=tuple(agreements),
            confidentiality=element.confidentiality_of(careplan),
            care_guarantee=element.care_guarantee_of(careplan),
        )

    def _team(self, team: Resource, contract_id: str) -> tuple[list[Professional], list[Relative]]:
        professionals: list[Professional] = []
        relatives: list[Relative] = []
        for participant in team.get("participant", []):
            role = _code(participant["role"][0], code_table("care-team-role").system)
            member = participant["member"]
            if role == "responsible-clinician":
                continue
            if role == "relative":
                relatives.append(self.relative(self.get(member, "RelatedPerson"), contract_id))
            else:
                professionals.append(self.professional(self.get(member, "PractitionerRole")))
        return professionals, relatives

    def organization(self, organization: Resource) -> Organization:
        kind = _code(organization["type"][0], code_table("organization-kind").system)
        return Organization(
            identifier=_identifier(organization), name=organization["name"], kind=kind
        )

    def professional(self, role: Resource) -> Professional:
        practitioner = self.get(role.get("practitioner"), "Practitioner")
        return Professional(
            identifier=_identifier(practitioner),
            name=_name(practitioner["name"][0]),
            role=_code(role["code"][0], code_table("care-team-role").system),
            organization=self.organization(self.get(role.get("organization"), "Organization")),
            contacts=tuple(_contact(c) for c in role.get("telecom", [])),
        )

    def relative(self, person: Resource, contract_id: str) -> Relative:
        return Relative(
            key=_local_key(person, urls.ID_RELATED_PERSON, contract_id),
            name=_name(person["name"][0]),
            relationship=person["relationship"][0]["coding"][0]["code"],
            contacts=tuple(_contact(c) for c in person.get("telecom", [])),
        )

    def care_contact(self, team: Resource) -> CareContact:
        participant = team["participant"][0]
        requested = _extension(participant, urls.EXT_REQUESTED_BY_PATIENT)["valueBoolean"]
        notes = team.get("note", [])
        return CareContact(
            kind=_code(participant["role"][0], code_table("care-team-role").system),
            professional=self.professional(self.get(participant["member"], "PractitionerRole")),
            how_to_reach=notes[0]["text"] if notes else None,
            period=_period(participant.get("period")),
            requested_by_patient=requested,
        )

    def activity(self, activity: Resource, contract_id: str) -> Activity:
        detail = activity["detail"]
        owner = _extension(detail, urls.EXT_ACTIVITY_OWNER)["valueCoding"]["code"]
        timing = detail.get("scheduledTiming", {}).get("repeat")
        performer = detail["performer"][0]
        organization = relative = None
        if owner in ("care-unit", "municipality"):
            organization = self.organization(self.get(performer, "Organization"))
        elif owner == "relative":
            relative = _local_key(
                self.get(performer, "RelatedPerson"), urls.ID_RELATED_PERSON, contract_id
            )
        return Activity(
            key=activity["id"],
            owner=owner,
            category=_code(detail["code"], code_table("activity-category").system),
            description=detail["description"],
            status=detail["status"],
            period=_period(timing.get("boundsPeriod") if timing else detail.get("scheduledPeriod")),
            schedule=Schedule(
                frequency=timing["frequency"], period=timing["period"], unit=timing["periodUnit"]
            )
            if timing
            else None,
            organization=organization,
            relative=relative,
        )

    def goal(self, goal: Resource, contract_id: str) -> Goal:
        achievement = goal.get("achievementStatus")
        status = (
            goal["lifecycleStatus"],
            achievement["coding"][0]["code"] if achievement else None,
        )
        if status not in _GOAL_STATUS:
            raise UnreadableContractError(
                f"Goal {goal.get('id', '')}: status {status} is not one of ours"
            )
        targets = goal.get("target", [])
        due = targets[0].get("dueDate") if targets else None
        return Goal(
            key=_local_key(goal, urls.ID_GOAL, contract_id),
            description=goal["description"]["text"],
            status=_GOAL_STATUS[status],
            due=date.fromisoformat(due) if due else None,
            confidentiality=element.confidentiality_of(goal),
        )

    def agreed_time(self, appointment: Resource, contract_id: str) -> AgreedTime:
        organization = professional = None
        for participant in appointment["participant"]:
            actor = self.resolve(participant["actor"])
            if actor.get("resourceType") == "HealthcareService":
                organization = self.organization(self.get(actor.get("providedBy"), "Organization"))
            elif actor.get("resourceType") == "PractitionerRole":
                professional = self.professional(actor)
        if organization is None:
            raise UnreadableContractError(
                f"Appointment {appointment.get('id', '')} names no care unit"
            )
        time_types = [
            c.get("code")
            for concept in appointment.get("serviceType", [])
            for c in concept.get("coding", [])
            if c.get("system") == urls.CS_TIME_TYPE
        ]
        slots = [
            str(s.get("reference", "")).removeprefix("Slot/").split("/_history/")[0]
            for s in appointment.get("slot", [])
        ]
        return AgreedTime(
            key=_local_key(appointment, urls.ID_AGREED_TIME, contract_id),
            description=appointment["description"],
            status=appointment["status"],
            start=_instant(appointment.get("start")),
            end=_instant(appointment.get("end")),
            organization=organization,
            professional=professional,
            confidentiality=element.confidentiality_of(appointment),
            time_type=time_types[0] if time_types else None,
            slot=slots[0] if slots else None,
            cancellation_reason=appointment.get("cancelationReason", {}).get("text"),
            care_guarantee=element.guarantee_verdict_of(appointment),
        )

    def agreements(self, careplan: Resource, version: int | None) -> list[Agreement]:
        # Stored: the Provenance names this CarePlan version. Unsent: it names the fullUrl.
        this_version = {
            f"CarePlan/{careplan.get('id')}/_history/{version}",
            self.full_urls.get(id(careplan), ""),
        } - {""}
        provenances = [
            r
            for r in self.resources
            if r["resourceType"] == "Provenance"
            and _is_agreement(r)
            and any(t.get("reference") in this_version for t in r.get("target", []))
        ]
        agreements = []
        for provenance in provenances:
            for signature in provenance.get("signature", []):
                who = self.resolve(signature["who"])
                party = (
                    AgreementParty.PATIENT
                    if who.get("resourceType") == "Patient"
                    else AgreementParty.RESPONSIBLE_CLINICIAN
                )
                agreements.append(
                    Agreement(party=party, agreed_at=datetime.fromisoformat(signature["when"]))
                )
        return agreements


def _is_agreement(provenance: Resource) -> bool:
    # A change's Provenance carries the signatures too when it is the agreement; counting
    # both would agree twice.
    tags = provenance.get("meta", {}).get("tag", [])
    return any(tag.get("system") == urls.TAG_AGREEMENT for tag in tags)


def _has_id(resource: Resource, system: str, value: str) -> bool:
    return any(
        i.get("system") == system and i.get("value") == value
        for i in resource.get("identifier", [])
    )


def _local_key(resource: Resource, system: str, contract_id: str) -> str:
    for identifier in resource.get("identifier", []):
        if identifier.get("system") == system and identifier["value"].startswith(f"{contract_id}/"):
            return str(identifier["value"][len(contract_id) + 1 :])
    raise UnreadableContractError(
        f"{resource['resourceType']} {resource.get('id', '')} has no key of {contract_id!r}"
    )


def _identifier(resource: Resource) -> Identifier:
    for identifier in resource.get("identifier", []):
        kind = kind_for(identifier.get("system", ""))
        if kind is not None:
            return Identifier(kind=kind, value=identifier["value"])
    raise UnreadableContractError(
        f"{resource['resourceType']} {resource.get('id', '')} has no national identifier"
    )


def _name(name: Resource) -> Name:
    return Name(family=name["family"], given=tuple(name.get("given", [])))


def _contact(contact: Resource) -> Contact:
    return Contact(system=contact["system"], value=contact["value"])


def _code(concept: Resource, system: str) -> str:
    for coding in concept.get("coding", []):
        if coding.get("system") == system:
            return str(coding["code"])
    raise UnreadableContractError(f"no code of {system} in {concept}")


def _extension(element: Resource, url: str) -> Resource:
    for extension in element.get("extension", []):
        if extension.get("url") == url:
            return dict(extension)
    raise UnreadableContractError(f"extension {url} is missing")


def _note_kind(note: Resource) -> str:
    return str(_extension(note, urls.EXT_NOTE_KIND)["valueCoding"]["code"])


def _period(period: Resource | None) -> Period | None:
    if not period:
        return None
    return Period(
        start=date.fromisoformat(period["start"]) if "start" in period else None,
        end=date.fromisoformat(period["end"]) if "end" in period else None,
    )


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
