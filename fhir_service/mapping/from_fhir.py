"""FHIR resources → the contract they hold.

The inverse of ``to_fhir``: given the CarePlan of a contract and everything it points at (one
search with the includes in :data:`READ_PARAMS`, or a transaction Bundle a client sent), rebuild
the contract, with the CarePlan's server version as the contract's version.

Reading never stops at the first problem. Every place that does not hold what a contract needs
is collected, each with its FHIRPath in the Bundle (``Bundle.entry[3].resource.participant[0]
.role``) and a sentence saying what to change, and :class:`UnreadableContractError` carries them
all. The contract's own checks (identifiers, dates, lists, consistency) run once on the whole
contract; their places, JSON paths of the contract, are translated back to the FHIR elements
they were read from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from fhir_service.contract import (
    Activity,
    AgreementParty,
    CareContact,
    Contract,
    ContractStatus,
    Goal,
    GoalStatus,
    Identifier,
    Organization,
    Professional,
    Proposal,
    Relative,
    Reporter,
    Signature,
)
from fhir_service.contract.problems import problems_of
from fhir_service.mapping import elements as element
from fhir_service.mapping import urls
from fhir_service.mapping.codes import unknown_codes
from fhir_service.mapping.elements import identity_url
from fhir_service.mapping.identifier_systems import kind_for
from fhir_service.mapping.narrative import untitled
from fhir_service.mapping.provenance import (
    ATTESTED_SIGNATURE,
    SignedContents,
    digest_of_data,
    valid_signatures,
)
from fhir_service.mapping.sent import RECORD_TYPES, kept, record
from fhir_service.mapping.tables import Language, care_team_role_of, code_table, language_of
from fhir_service.mapping.to_fhir import contract_records

__all__ = ["READ_PARAMS", "Issue", "Sender", "UnreadableContractError", "contract_from_bundle"]

Resource = dict[str, Any]

READ_PARAMS: list[tuple[str, str]] = [
    ("_include", "CarePlan:subject"),
    ("_include", "CarePlan:care-team"),
    ("_include", "CarePlan:goal"),
    ("_include", "CarePlan:activity-reference"),
    ("_include", "CarePlan:performer"),
    # Records the sender's plan held that are none of the contract's parts (mapping/sent.py).
    ("_include", "CarePlan:contract-record"),
    ("_include", "CarePlan:responsible-unit"),
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

_GOAL_STATUS: dict[tuple[str | None, str | None], GoalStatus] = {
    ("proposed", None): GoalStatus.PROPOSED,
    ("active", None): GoalStatus.ACTIVE,
    ("completed", "achieved"): GoalStatus.ACHIEVED,
    ("completed", "not-achieved"): GoalStatus.NOT_ACHIEVED,
    ("cancelled", None): GoalStatus.CANCELLED,
}
_STATUS_OF_CAREPLAN = {
    "draft": "draft",
    "active": "agreed",
    "completed": "completed",
    "revoked": "revoked",
}
"""A contract's status from the CarePlan's alone, for a sender that has no contract-status
extension: what ``to_fhir.CAREPLAN_STATUS`` writes back as the same CarePlan status."""
_PARENT = re.compile(r"(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\]|\['(?:[^'\\]|\\.)*'\])$")
_SHOWN_ISSUES = 3
_RESPONSIBLE = (
    "must name the responsible clinician as a PractitionerRole: a Practitioner with an HSA-id "
    "or HPR-nummer at the unit responsible for the contract, an Organization with an HSA-id "
    "or organisasjonsnummer; or be sent with a care unit's token, whose unit is then "
    "responsible"
)
_NOT_ROLES = ("Practitioner", "Organization")
"""Authors a sender may name that are not yet a responsible clinician to us."""
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9:.]+(Z|[+-]\d{2}:\d{2})")
_TITLE_LENGTH = 200
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-.]{0,63}")
_MUNICIPALITY = re.compile(r"kommun|municipality")
"""How a municipality (kommun, kommune) names itself, where it has no kind of ours."""


@dataclass(frozen=True)
class Sender:
    """The care unit whose system sends a client's Bundle, and when it arrived."""

    unit: Organization
    received: datetime


@dataclass(frozen=True)
class Issue:
    """One place in the FHIR resources that does not hold what a contract needs."""

    expression: str
    """FHIRPath of the element, from the Bundle: ``Bundle.entry[2].resource.title``."""
    message: str
    """What is wrong there and what to change, in FHIR's terms."""


class UnreadableContractError(ValueError):
    """The resources do not hold a contract we can read; ``issues`` names every place."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = tuple(issues)
        shown = "; ".join(f"{i.expression}: {i.message}" for i in self.issues[:_SHOWN_ISSUES])
        if len(self.issues) > _SHOWN_ISSUES:
            shown += f"; {len(self.issues) - _SHOWN_ISSUES} more"
        super().__init__(shown)


def contract_from_bundle(
    bundle: Resource,
    contract_id: str | None = None,
    *,
    codes: bool = False,
    sent: bool = False,
    new_id: str | None = None,
    sender: Sender | None = None,
) -> Contract:
    """The contract held by ``bundle``: a search result read from HAPI, or a transaction.

    ``contract_id`` picks one contract when the Bundle holds several; without it the Bundle
    must hold exactly one. ``codes``: a code our tables do not hold is a problem too (on
    input; a stored contract stays readable when a table drops a code). ``sent``: keep what
    the records hold beyond the contract's fields in ``Contract.sent`` (``mapping/sent.py``),
    for those who write the contract again; readers only need not pay for it.

    ``new_id``: the contract a CarePlan that carries no contract id of ours (another EHR's
    plan) is, in a client's Bundle. ``sender``: the unit whose system sends it, responsible
    for a plan that names no clinician of ours, and attesting the agreement to one in force.

    Records the contract cannot take as its parts (a care team or goal of the sender's own, a
    contained one, an activity whose owner cannot be told, a note of no kind of ours) are not
    refused: they are the sender's, and with ``sent`` kept and written back as they came.
    """
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise UnreadableContractError([Issue("Bundle", "must be a FHIR Bundle")])
    if not isinstance(entries, list):
        raise UnreadableContractError([Issue("Bundle.entry", "must list the contract's records")])
    reader = _Reader(entries, codes=codes, sender=sender)
    careplan = reader.careplan(contract_id, new_id)
    data = reader.contract(careplan, contract_id)
    try:
        contract = Contract.model_validate(_present(data))
    except ValidationError as exc:
        for problem in problems_of(exc):
            reader.model_problem(problem.path, problem.message)
        raise UnreadableContractError(reader.issues) from None
    if codes:
        for path, message in unknown_codes(contract):
            reader.model_problem(path, message)
    if reader.issues:
        raise UnreadableContractError(reader.issues)
    if contract.status in (ContractStatus.DRAFT, ContractStatus.REVISED):
        signatures = valid_signatures(contract, reader.signatures(careplan))
        if signatures:
            contract = contract.model_copy(update={"signatures": signatures})
    if sent:
        return contract.model_copy(update={"sent": reader.sent(careplan, contract)})
    return contract


def _present(value: Any) -> Any:
    """``value`` without the members the resources did not have: an absent element is
    "required" to the contract's checks, not a wrong value."""
    if isinstance(value, dict):
        return {k: _present(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_present(v) for v in value]
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _obj(value: Any) -> Resource:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _first(value: Any) -> Resource:
    items = _items(value)
    return _obj(items[0]) if items else {}


class _Reader:
    """Reads one contract's resources, collecting problems instead of stopping at the first."""

    def __init__(self, entries: list[Any], *, codes: bool, sender: Sender | None) -> None:
        self.codes = codes
        self.sender = sender
        self.new_id: str | None = None
        self.origins: dict[tuple[str, str, str], Resource] = {}
        """The resource each of the contract's own records was read from, by identity."""
        self.keys: dict[int, str] = {}
        self.activity_keys: dict[int, str] = {}
        """Keys given to a client's activities without an id, by place in CarePlan.activity."""
        self.roles: list[tuple[Resource, Resource]] = []
        """Each PractitionerRole read as a professional, with what was read from it."""
        self.issues: list[Issue] = []
        self.sources: dict[str, str] = {}
        self.resources: list[Resource] = []
        self.by_ref: dict[str, Resource] = {}
        self.full_urls: dict[int, str] = {}
        self.paths: dict[int, str] = {}
        for index, entry in enumerate(entries):
            resource = _obj(entry).get("resource")
            if not isinstance(resource, dict):
                self.issue(f"Bundle.entry[{index}]", "holds no resource")
                continue
            self.resources.append(resource)
            self.paths[id(resource)] = f"Bundle.entry[{index}].resource"
            kind = resource.get("resourceType")
            if isinstance(resource.get("id"), str) and isinstance(kind, str):
                self.by_ref[f"{kind}/{resource['id']}"] = resource
            full_url = _obj(entry).get("fullUrl")
            if isinstance(full_url, str) and full_url.startswith("urn:"):
                # A transaction Bundle refers by fullUrl, before the server gave ids.
                self.by_ref[full_url] = resource
                self.full_urls[id(resource)] = full_url

    def sent(self, careplan: Resource, contract: Contract) -> dict[str, Resource]:
        """What each of the contract's records holds beyond what the contract writes for it."""
        ours = contract_records(contract)
        self.role_origins()
        by_identifier: dict[tuple[str, str, str], Resource] = {}
        for resource in self.resources:
            for identifier in _items(resource.get("identifier")):
                system, value = _obj(identifier).get("system"), _obj(identifier).get("value")
                if isinstance(system, str) and isinstance(value, str):
                    key = (str(resource.get("resourceType")), system, value)
                    by_identifier.setdefault(key, resource)
        origins: list[tuple[str, Resource]] = []
        for url, mine in ours.items():
            if mine["resourceType"] == "CarePlan":
                origins.append((url, careplan))
                continue
            first = mine["identifier"][0]
            identity = (mine["resourceType"], first["system"], first["value"])
            origin = self.origins.get(identity) or by_identifier.get(identity)
            if origin is not None:
                origins.append((url, origin))
        taken = {id(origin) for _, origin in origins} | {id(careplan)}
        records: list[tuple[str, Resource, Resource]] = []
        keys: set[str] = set()
        for resource in self.resources:
            kind = str(resource.get("resourceType"))
            if id(resource) in taken or kind not in RECORD_TYPES:
                continue
            value = f"{contract.id}/{self.record_key(resource, contract.id, keys)}"
            identifier = {"system": urls.ID_RECORD, "value": value}
            records.append((identity_url(kind, urls.ID_RECORD, value), resource, identifier))
        url_of = {id(r): url for url, r in [*origins, *((url, r) for url, r, _ in records)]}
        identity_of = {
            ref: url_of[id(resource)]
            for ref, resource in self.by_ref.items()
            if id(resource) in url_of
        }
        compared = [(url, self.with_keys(r) if r is careplan else r) for url, r in origins]
        found = kept(compared, ours, identity_of)
        for url, resource, identifier in records:
            found[url] = record(resource, identifier, identity_of)
        return found

    def role_origins(self) -> None:
        """A client's PractitionerRoles read as professionals are where ours come from: they
        carry no identifier of ours, which is made of the person's and the unit's."""
        for role, data in self.roles:
            try:
                person = Identifier.model_validate(data.get("identifier"))
                unit = Identifier.model_validate(_obj(data.get("organization")).get("identifier"))
            except ValueError:
                continue
            value = f"{element.key_of(person)}@{element.key_of(unit)}"
            self.origins.setdefault(("PractitionerRole", urls.ID_PRACTITIONER_ROLE, value), role)

    def with_keys(self, careplan: Resource) -> Resource:
        """``careplan`` with the keys given to a client's activities that had no id, so that
        each is compared with the activity the contract made of it."""
        if not self.activity_keys:
            return careplan
        activities = list(_items(careplan.get("activity")))
        for index, key in self.activity_keys.items():
            activities[index] = {**_obj(activities[index]), "id": key}
        return {**careplan, "activity": activities}

    def record_key(self, resource: Resource, contract_id: str, taken: set[str]) -> str:
        """The key of a record that is none of the contract's parts: the one it was stored
        under, else one the same Bundle sent again gives it again (its fullUrl's or id)."""
        kind = str(resource.get("resourceType"))
        prefix = f"{contract_id}/"
        for identifier in _items(resource.get("identifier")):
            value = _obj(identifier).get("value")
            ours = _obj(identifier).get("system") == urls.ID_RECORD
            if ours and isinstance(value, str) and value.startswith(prefix):
                taken.add(value.removeprefix(prefix))
                return value.removeprefix(prefix)
        sent_as = self.full_urls.get(id(resource), "").rsplit(":", 1)[-1] or resource.get("id")
        key = f"{kind}-{sent_as}"
        if not isinstance(sent_as, str) or not _KEY.fullmatch(key) or key in taken:
            key = f"{kind}-{len(taken) + 1}"
        taken.add(key)
        return key

    # Problems and where they are

    def issue(self, expression: str, message: str) -> None:
        if Issue(expression, message) not in self.issues:
            self.issues.append(Issue(expression, message))

    def source(self, path: str, expression: str) -> None:
        """Record that the contract's ``path`` (JSON path) was read from ``expression``; the
        last record of a path is the most precise."""
        self.sources[path] = expression

    def model_problem(self, path: str, message: str) -> None:
        """A problem the contract's own checks found at ``path``, said at its FHIR element."""
        place = path
        while place not in self.sources and place != "$":
            place = _PARENT.sub("", place) or "$"
        expression = self.sources.get(place, "Bundle")
        # What the reader said already (a missing record, a code it could not find) is not
        # said twice, nor again for the elements inside it.
        if any(expression.startswith(i.expression) for i in self.issues):
            return
        self.issue(expression, message)

    def path(self, resource: Resource) -> str:
        return self.paths.get(id(resource), "Bundle")

    # References

    def resolve(self, reference: Any) -> Resource:
        """The resource ``reference`` points at (by id, versioned or not, or by fullUrl); {}."""
        ref = _obj(reference).get("reference")
        if not isinstance(ref, str):
            return {}
        return self.by_ref.get(ref.split("/_history/")[0], {})

    def named_as(self, resource: Resource) -> str | None:
        """How this Bundle refers to ``resource``: its fullUrl, else ``Type/id``."""
        if not resource:
            return None
        if id(resource) in self.full_urls:
            return self.full_urls[id(resource)]
        return f"{resource.get('resourceType')}/{resource.get('id')}"

    def get(self, reference: Any, expected: str, at: str) -> Resource | None:
        """The ``expected`` resource the reference at ``at`` names; None after saying why."""
        target = self.resolve(reference)
        if target.get("resourceType") == expected:
            return target
        ref = _obj(reference).get("reference")
        wanted = f"{'an' if expected[0] in 'AEIOU' else 'a'} {expected}"
        if not isinstance(ref, str):
            self.issue(at, f"must refer to {wanted}")
        elif target:
            self.issue(
                at,
                f"refers to a resource of type {target.get('resourceType')}; {wanted} belongs here",
            )
        else:
            self.issue(at, f"refers to {wanted} the Bundle does not hold; add it as an entry")
        return None

    # The contract

    def careplan(self, contract_id: str | None, new_id: str | None) -> Resource:
        careplans = [r for r in self.resources if r.get("resourceType") == "CarePlan"]
        if contract_id is not None:
            careplans = [r for r in careplans if _has_id(r, urls.ID_CONTRACT, contract_id)]
            if len(careplans) != 1:
                self.issue("Bundle", f"holds no CarePlan of contract {contract_id}")
                raise UnreadableContractError(self.issues)
            return careplans[0]
        if len(careplans) != 1:
            self.issue("Bundle", f"holds {len(careplans)} CarePlans; a contract is one CarePlan")
            raise UnreadableContractError(self.issues)
        careplan = careplans[0]
        ids = [
            i.get("value")
            for i in _items(careplan.get("identifier"))
            if _obj(i).get("system") == urls.ID_CONTRACT
        ]
        if not ids and new_id is not None:
            self.new_id = new_id
        elif len(ids) != 1 or not isinstance(ids[0], str):
            self.issue(
                f"{self.path(careplan)}.identifier",
                f"must hold one identifier of system {urls.ID_CONTRACT}: the contract's id",
            )
        return careplan

    def contract(self, careplan: Resource, contract_id: str | None) -> Resource:
        cp = self.path(careplan)
        if contract_id is None:
            contract_id = self.new_id or next(
                (
                    str(_obj(i).get("value"))
                    for i in _items(careplan.get("identifier"))
                    if _obj(i).get("system") == urls.ID_CONTRACT
                ),
                "",
            )
        self.source("$", cp)
        self.source("$.id", f"{cp}.identifier")
        data: Resource = {
            "id": contract_id,
            "title": _title_of(careplan),
            "description": careplan.get("description"),
            "language": careplan.get("language"),
        }
        self.source("$.title", f"{cp}.title")
        self.source("$.description", f"{cp}.description")
        self.source("$.language", f"{cp}.language")
        version_id = _obj(careplan.get("meta")).get("versionId")
        if isinstance(version_id, str) and version_id.isdigit():
            data["version"] = int(version_id)
        status = self.status(careplan, cp)
        data["status"] = status
        self.period(data, "period", careplan.get("period"), "$.period", f"{cp}.period")
        self.source("$.patient", f"{cp}.subject")
        patient = self.get(careplan.get("subject"), "Patient", f"{cp}.subject")
        if patient is not None:
            data["patient"] = self.patient(patient)
        self.responsible(careplan, data)
        self.teams(careplan, data, contract_id)
        # Goals before activities: an activity names the goals it serves.
        self.goals(careplan, data, contract_id)
        self.activities(careplan, data, contract_id)
        self.notes(careplan, data)
        agreements = self.agreements(careplan, data.get("version"))
        if status == "agreed" and not agreements and self.sender is not None:
            # A plan in force in the sending EHR: agreed there, as its unit's system attests.
            agreements = self.attested(careplan, self.sender)
        if status == "agreed" and not agreements:
            # A plan in force elsewhere, or a writer that changed an agreed contract without
            # revising it: who agreed, and when, is what makes a contract agreed.
            self.issue(
                cp,
                "is agreed (active), but no agreement Provenance with the patient's and the "
                "responsible clinician's signatures targets this version: add it, or send the "
                "plan as draft",
            )
        data["agreements"] = agreements
        self.source("$.agreements", cp)
        if data["title"] is None:
            data["title"] = untitled(_language_for(careplan, data))
        data["confidentiality"] = element.confidentiality_of(careplan)
        try:
            data["care_guarantee"] = element.care_guarantee_of(careplan)
        except (KeyError, TypeError, ValueError):
            self.issue(
                f"{cp}.extension",
                f"the care-guarantee extension ({urls.EXT_CARE_GUARANTEE}) needs its "
                "jurisdiction, step and since",
            )
        self.source("$.care_guarantee", f"{cp}.extension")
        try:
            review = element.patient_review_of(careplan)
        except (KeyError, TypeError, ValueError):
            self.issue(
                f"{cp}.extension",
                f"the patient-review extension ({urls.EXT_PATIENT_REVIEW}) needs when the "
                "version was proposed, and a declined one when",
            )
        else:
            if review is not None:
                data["patient_review"] = review
        self.source("$.patient_review", f"{cp}.extension")
        return data

    def responsible(self, careplan: Resource, data: Resource) -> None:
        """The responsible clinician (``CarePlan.author``) and unit: ours name both; a sender's
        plan may name only a person of its own, or no one, and its unit is the sender's."""
        cp = self.path(careplan)
        self.source("$.responsible_clinician", f"{cp}.author")
        self.source("$.responsible_unit", f"{cp}.extension")
        unit = next(
            (
                _obj(e).get("valueReference")
                for e in _items(careplan.get("extension"))
                if _obj(e).get("url") == urls.EXT_RESPONSIBLE_UNIT
            ),
            None,
        )
        organization = self.get(unit, "Organization", f"{cp}.extension") if unit else None
        if organization is not None:
            data["responsible_unit"] = self.organization(organization, "$.responsible_unit")
        elif self.sender is not None:
            data["responsible_unit"] = self.sender.unit.model_dump(mode="json")
        named = self.resolve(careplan.get("author"))
        if named.get("resourceType") == "Practitioner":
            # A sender naming the person: their role at a unit, if the Bundle holds one.
            named = self.role_of(named)
        author = named if named.get("resourceType") == "PractitionerRole" else None
        if "responsible_unit" in data:
            # The unit is known: an author who is no clinician of ours is the sender's, kept.
            if author is not None:
                clinician = self.attempt(
                    Professional, self.professional, author, "$.responsible_clinician"
                )
                if clinician is not None:
                    data["responsible_clinician"] = clinician
                    if organization is None:
                        # A clinician of ours: their unit is responsible, not the sender's.
                        del data["responsible_unit"]
            return
        if careplan.get("author") is None or named.get("resourceType") in _NOT_ROLES:
            self.issue(f"{cp}.author", _RESPONSIBLE)
        elif author is None:
            self.get(careplan.get("author"), "PractitionerRole", f"{cp}.author")
        if author is not None:
            data["responsible_clinician"] = self.professional(author, "$.responsible_clinician")

    def attested(self, careplan: Resource, sender: Sender) -> list[Resource]:
        """Both parties' agreement to a plan in force in the sending EHR, as its system
        attests it: given when the plan was created there, else when it arrived."""
        created = careplan.get("created")
        dated = isinstance(created, str) and _DATE_TIME.fullmatch(created)
        at = created if dated else sender.received.isoformat()
        return [{"party": party, "agreed_at": at, "attested": True} for party in AgreementParty]

    def status(self, careplan: Resource, cp: str) -> str | None:
        """The contract's status: our extension's, else what ``CarePlan.status`` says of it."""
        if _has_extension(careplan, urls.EXT_CONTRACT_STATUS):
            self.source("$.status", f"{cp}.extension")
            status = self.extension_code(careplan, urls.EXT_CONTRACT_STATUS, cp, "contract-status")
        else:
            self.source("$.status", f"{cp}.status")
            status = _STATUS_OF_CAREPLAN.get(str(careplan.get("status")))
            if status is None:
                self.issue(
                    f"{cp}.status",
                    "a contract's CarePlan is draft, active (agreed), completed or revoked; or "
                    f"give its status in the extension {urls.EXT_CONTRACT_STATUS}",
                )
        intent = careplan.get("intent")
        # An order is a plan authorised for action (as Synthea writes them), a proposal a plan
        # not yet agreed: a draft.
        if intent not in ("plan", "order") and (intent, status) != ("proposal", "draft"):
            shown = intent if isinstance(intent, str) and intent.isalpha() else "another"
            self.issue(
                f"{cp}.intent",
                f"is {shown}: a contract is a CarePlan of intent plan or order, or a proposal "
                "while it is a draft: the plan the patient and the care agree on",
            )
        return status

    def teams(self, careplan: Resource, data: Resource, contract_id: str) -> None:
        cp = self.path(careplan)
        self.source("$.professionals", f"{cp}.careTeam[0]")
        self.source("$.relatives", f"{cp}.careTeam[0]")
        teams = [
            self.get(ref, "CareTeam", f"{cp}.careTeam[{i}]")
            for i, ref in enumerate(_items(careplan.get("careTeam")))
            if not _contained(ref)
        ]
        # A client's own care teams are kept as sent; the contract reads those of ours.
        main = next((t for t in teams if t and _has_id(t, urls.ID_CARE_TEAM, contract_id)), None)
        contact_teams = [
            t for t in teams if t and _has_id_under(t, urls.ID_CARE_TEAM, f"{contract_id}/")
        ]
        professionals: list[Resource] = []
        relatives: list[Resource] = []
        for index, participant in enumerate(_items(_obj(main).get("participant"))):
            at = f"{self.path(_obj(main))}.participant[{index}]"
            role = self.code(_first(_obj(participant).get("role")), "care-team-role", f"{at}.role")
            member = _obj(participant).get("member")
            if role == "responsible-clinician":
                continue
            if role == "relative":
                person = self.get(member, "RelatedPerson", f"{at}.member")
                if person is not None:
                    path = f"$.relatives[{len(relatives)}]"
                    relatives.append(self.relative(person, contract_id, path))
            elif role is not None:
                practitioner_role = self.get(member, "PractitionerRole", f"{at}.member")
                if practitioner_role is not None:
                    path = f"$.professionals[{len(professionals)}]"
                    professionals.append(self.professional(practitioner_role, path))
        contacts: list[Resource] = []
        for team in contact_teams:
            if team is not None:
                contacts.append(self.care_contact(team, f"$.care_contacts[{len(contacts)}]"))
        if main is None and not contact_teams:
            # Only a sender's own teams: who takes part, and who is the patient's fixed care
            # contact, read from their members' roles (the teams themselves are kept as sent).
            for team in (t for t in teams if t):
                self.client_team(team, careplan, professionals, relatives, contacts, contract_id)
        data["professionals"] = professionals
        data["relatives"] = relatives
        data["care_contacts"] = contacts

    def role_of(self, practitioner: Resource) -> Resource:
        """The PractitionerRole the Bundle holds for ``practitioner``, else the practitioner."""
        for resource in self.resources:
            person = self.resolve(resource.get("practitioner"))
            if resource.get("resourceType") == "PractitionerRole" and person is practitioner:
                return resource
        return practitioner

    def client_team(
        self,
        team: Resource,
        careplan: Resource,
        professionals: list[Resource],
        relatives: list[Resource],
        contacts: list[Resource],
        contract_id: str,
    ) -> None:
        """The members of a sender's care team the contract can take, by their roles."""
        author = self.resolve(careplan.get("author"))
        for index, participant in enumerate(_items(team.get("participant"))):
            at = f"{self.path(team)}.participant[{index}]"
            role = care_team_role_of(_first(_obj(participant).get("role")))
            member = self.resolve(_obj(participant).get("member"))
            kind = member.get("resourceType")
            if role in ("fast-vardkontakt", "personlig-koordinator") and kind == "PractitionerRole":
                path = f"$.care_contacts[{len(contacts)}]"
                read = self.attempt(
                    CareContact, self.client_care_contact, participant, role, at, path
                )
                if read is not None:
                    contacts.append(read)
            elif role == "relative" and kind == "RelatedPerson":
                path = f"$.relatives[{len(relatives)}]"
                read = self.attempt(Relative, self.relative, member, contract_id, path)
                if read is not None:
                    relatives.append(read)
            elif role is not None and kind == "PractitionerRole" and member is not author:
                path = f"$.professionals[{len(professionals)}]"
                read = self.attempt(Professional, self.professional, member, path)
                if read is not None:
                    professionals.append(read)

    def client_care_contact(self, participant: Resource, role: str, at: str, path: str) -> Resource:
        """A fixed care contact a sender's team names by its member's role."""
        self.source(path, at)
        data: Resource = {"kind": role, "requested_by_patient": False}
        member = self.resolve(participant.get("member"))
        data["professional"] = self.professional(member, f"{path}.professional")
        self.period(data, "period", participant.get("period"), f"{path}.period", f"{at}.period")
        return data

    def activities(self, careplan: Resource, data: Resource, contract_id: str) -> None:
        cp = self.path(careplan)
        activities: list[Resource] = []
        times: list[Resource] = []
        for index, activity in enumerate(_items(careplan.get("activity"))):
            at = f"{cp}.activity[{index}]"
            detail = _obj(_obj(activity).get("detail"))
            if detail and not _has_extension(detail, urls.EXT_ACTIVITY_OWNER):
                path = f"$.activities[{len(activities)}]"
                read = self.attempt(
                    Activity, self.client_activity, _obj(activity), index, contract_id, at, path
                )
                if read is not None:
                    activities.append(read)
            elif detail:
                path = f"$.activities[{len(activities)}]"
                activities.append(self.activity(_obj(activity), contract_id, at, path))
            elif isinstance(_obj(_obj(activity).get("reference")).get("reference"), str):
                target = self.resolve(activity["reference"])
                if target and not _has_id_under(target, urls.ID_AGREED_TIME, ""):
                    continue  # a client's own request (a ServiceRequest, ...): kept as sent
                appointment = self.get(activity["reference"], "Appointment", f"{at}.reference")
                if appointment is not None:
                    path = f"$.agreed_times[{len(times)}]"
                    times.append(self.agreed_time(appointment, contract_id, path))
            # Else only what came of it (outcome, progress): the sender's, kept as sent.
        data["activities"] = activities
        data["agreed_times"] = times

    def goals(self, careplan: Resource, data: Resource, contract_id: str) -> None:
        cp = self.path(careplan)
        goals: list[Resource] = []
        for index, reference in enumerate(_items(careplan.get("goal"))):
            if _contained(reference):
                continue  # the client's goal inside its CarePlan: kept as sent
            goal = self.get(reference, "Goal", f"{cp}.goal[{index}]")
            path = f"$.goals[{len(goals)}]"
            if goal is not None and not _has_id_under(goal, urls.ID_GOAL, ""):
                read = self.attempt(Goal, self.goal, goal, contract_id, path)
                if read is not None:
                    goals.append(read)
            elif goal is not None:
                goals.append(self.goal(goal, contract_id, path))
        data["goals"] = goals

    def notes(self, careplan: Resource, data: Resource) -> None:
        cp = self.path(careplan)
        kinds: dict[str, list[Any]] = {"patient-resource": [], "wish": []}
        fields = {"patient-resource": "patient_resources", "wish": "wishes"}
        proposals: list[Proposal] = []
        for index, note in enumerate(_items(careplan.get("note"))):
            at = f"{cp}.note[{index}]"
            if not _has_extension(_obj(note), urls.EXT_NOTE_KIND):
                continue  # a note of the client's: kept as sent
            kind = self.extension_code(_obj(note), urls.EXT_NOTE_KIND, at, "note-kind")
            if kind in kinds:
                self.source(f"$.{fields[kind]}[{len(kinds[kind])}]", f"{at}.text")
                kinds[kind].append(_obj(note).get("text"))
            elif kind == "proposal":
                self.source(f"$.proposals[{len(proposals)}]", at)
                try:
                    proposals.append(element.proposal_of(_obj(note)))
                except (KeyError, TypeError, ValueError):
                    self.issue(
                        f"{at}.extension",
                        f"the patient's proposal ({urls.EXT_PATIENT_PROPOSAL}) needs its id "
                        "proposal:<key>, time, text, kind and status, and a declined one its "
                        "reason",
                    )
            elif kind is not None:
                self.issue(f"{at}.extension", f"note kind {kind} is not one of ours")
        data["patient_resources"] = kinds["patient-resource"]
        data["wishes"] = kinds["wish"]
        data["proposals"] = proposals

    # The parts

    def patient(self, patient: Resource) -> Resource:
        at = self.path(patient)
        self.source("$.patient", at)
        return {
            "identifier": self.identifier(patient, "$.patient.identifier", other=True),
            "name": self.name(patient, "$.patient.name"),
        }

    def organization(self, organization: Resource, path: str) -> Resource:
        at = self.path(organization)
        self.source(path, at)
        self.source(f"{path}.name", f"{at}.name")
        self.source(f"{path}.kind", f"{at}.type[0]")
        kind = _kind_of(organization)
        if kind is None:
            concept = _first(organization.get("type"))
            kind = self.code(concept, "organization-kind", f"{at}.type[0]")
        return {
            "identifier": self.identifier(organization, f"{path}.identifier"),
            "name": organization.get("name"),
            "kind": kind,
        }

    def professional(self, role: Resource, path: str) -> Resource:
        at = self.path(role)
        self.source(path, at)
        concept = _first(role.get("code"))
        # A sender's own coding of the role (SNOMED CT, ...) when it has none of ours.
        mapped = None if _has_coding_of(concept, "care-team-role") else care_team_role_of(concept)
        data: Resource = {
            "role": mapped or self.code(concept, "care-team-role", f"{at}.code[0]"),
        }
        self.source(f"{path}.role", f"{at}.code[0]")
        practitioner = self.get(role.get("practitioner"), "Practitioner", f"{at}.practitioner")
        if practitioner is not None:
            data["identifier"] = self.identifier(practitioner, f"{path}.identifier")
            data["name"] = self.name(practitioner, f"{path}.name")
        self.source(f"{path}.identifier", f"{at}.practitioner")
        self.source(f"{path}.name", f"{at}.practitioner")
        self.source(f"{path}.organization", f"{at}.organization")
        organization = self.get(role.get("organization"), "Organization", f"{at}.organization")
        if organization is not None:
            data["organization"] = self.organization(organization, f"{path}.organization")
        data["contacts"] = self.contacts(role, path)
        self.roles.append((role, data))
        return data

    def relative(self, person: Resource, contract_id: str, path: str) -> Resource:
        at = self.path(person)
        self.source(path, at)
        self.source(f"{path}.relationship", f"{at}.relationship[0]")
        codings = _items(_first(person.get("relationship")).get("coding"))
        return {
            "key": self.local_key(person, urls.ID_RELATED_PERSON, contract_id, f"{path}.key"),
            "identifier": self.identifier(person, f"{path}.identifier", other=True, required=False),
            "name": self.name(person, f"{path}.name"),
            "relationship": _first(codings).get("code"),
            "contacts": self.contacts(person, path),
        }

    def care_contact(self, team: Resource, path: str) -> Resource:
        at = self.path(team)
        self.source(path, at)
        participants = _items(team.get("participant"))
        if len(participants) != 1:
            self.issue(f"{at}.participant", "a care contact's team names the care contact only")
            return {}
        participant = _obj(participants[0])
        pat = f"{at}.participant[0]"
        data: Resource = {
            "kind": self.code(_first(participant.get("role")), "care-team-role", f"{pat}.role"),
            "requested_by_patient": self.extension_value(
                participant, urls.EXT_REQUESTED_BY_PATIENT, "valueBoolean", pat
            ),
        }
        self.source(f"{path}.kind", f"{pat}.role")
        self.source(f"{path}.professional", f"{pat}.member")
        role = self.get(participant.get("member"), "PractitionerRole", f"{pat}.member")
        if role is not None:
            data["professional"] = self.professional(role, f"{path}.professional")
        notes = _items(team.get("note"))
        if notes:
            data["how_to_reach"] = _obj(notes[0]).get("text")
            self.source(f"{path}.how_to_reach", f"{at}.note[0].text")
        self.period(data, "period", participant.get("period"), f"{path}.period", f"{pat}.period")
        return data

    def activity(self, activity: Resource, contract_id: str, at: str, path: str) -> Resource:
        self.source(path, at)
        detail = _obj(activity.get("detail"))
        dat = f"{at}.detail"
        owner = self.extension_code(detail, urls.EXT_ACTIVITY_OWNER, dat, "activity-owner")
        data: Resource = {
            "key": activity.get("id"),
            "owner": owner,
            "category": self.code(_obj(detail.get("code")), "activity-category", f"{dat}.code"),
            "description": detail.get("description"),
            "status": detail.get("status"),
            "confidentiality": element.activity_confidentiality_of(detail),
        }
        goals = {id(r): v.split("/", 1)[1] for (k, _, v), r in self.origins.items() if k == "Goal"}
        served = [self.resolve(g) for g in _items(detail.get("goal"))]
        # Links to the sender's own goals (contained ones, records) are kept as sent.
        data["goals"] = [goals[id(g)] for g in served if id(g) in goals]
        for field, element_path in (
            ("key", f"{at}.id"),
            ("goals", f"{dat}.goal"),
            ("owner", f"{dat}.extension"),
            ("category", f"{dat}.code"),
            ("description", f"{dat}.description"),
            ("status", f"{dat}.status"),
            ("organization", f"{dat}.performer[0]"),
            ("relative", f"{dat}.performer[0]"),
        ):
            self.source(f"{path}.{field}", element_path)
        repeat = _obj(_obj(detail.get("scheduledTiming")).get("repeat"))
        if repeat:
            data["schedule"] = {
                "frequency": repeat.get("frequency"),
                "period": repeat.get("period"),
                "unit": repeat.get("periodUnit"),
            }
            self.source(f"{path}.schedule", f"{dat}.scheduledTiming.repeat")
            bounds, bounds_at = repeat.get("boundsPeriod"), f"{dat}.scheduledTiming.repeat"
            self.period(data, "period", bounds, f"{path}.period", f"{bounds_at}.boundsPeriod")
        else:
            period_at = f"{dat}.scheduledPeriod"
            self.period(data, "period", detail.get("scheduledPeriod"), f"{path}.period", period_at)
        performer = _first(detail.get("performer"))
        if owner in ("care-unit", "municipality"):
            organization = self.get(performer, "Organization", f"{dat}.performer[0]")
            if organization is not None:
                data["organization"] = self.organization(organization, f"{path}.organization")
        elif owner == "relative":
            person = self.get(performer, "RelatedPerson", f"{dat}.performer[0]")
            if person is not None:
                data["relative"] = self.local_key(
                    person, urls.ID_RELATED_PERSON, contract_id, f"{path}.relative"
                )
        self.source(f"{path}.organization", f"{dat}.performer[0]")
        self.progress(activity, data, at, path)
        return data

    def progress(self, activity: Resource, data: Resource, at: str, path: str) -> None:
        """The activity's last progress report, ours among its progress notes (by element
        id); the sender's own notes are theirs, kept as sent."""
        ours = element.progress_report_id(str(activity.get("id")))
        for index, note in enumerate(_items(activity.get("progress"))):
            if _obj(note).get("id") != ours:
                continue
            pat = f"{at}.progress[{index}]"
            self.source(f"{path}.progress", pat)
            kind = self.extension_code(_obj(note), urls.EXT_NOTE_KIND, pat, "note-kind")
            author = self.resolve(_obj(note).get("authorReference")).get("resourceType")
            by = _REPORTER.get(str(author))
            if by is None:
                self.issue(f"{pat}.authorReference", "names no Patient, RelatedPerson or unit")
            data["progress"] = {
                "reported_at": note.get("time"),
                "by": by,
                "note": note.get("text") if kind == "progress" else None,
            }

    def client_activity(
        self, activity: Resource, index: int, contract_id: str, at: str, path: str
    ) -> Resource | None:
        """An activity of a client's plan without our owner extension, if who owns it can be
        told from its performer: the patient, one of the contract's relatives, or a unit with
        a national identifier (named, or a person's at it)."""
        detail = _obj(activity.get("detail"))
        performers = [self.resolve(p) for p in _items(detail.get("performer"))]
        kinds = {p.get("resourceType") for p in performers}
        relatives = {id(r) for (kind, _, _), r in self.origins.items() if kind == "RelatedPerson"}
        performer = None
        if kinds == {"Patient"}:
            owner = "patient"
        elif kinds == {"RelatedPerson"} and len(performers) == 1 and id(performers[0]) in relatives:
            owner = "relative"
        elif len(performers) == 1 and kinds <= {"Organization", "PractitionerRole", "Practitioner"}:
            # A unit's activity, or a person's at a unit: the unit's, or the municipality's
            # when the unit is one (the person stays named, kept as sent).
            unit = performers[0]
            if unit.get("resourceType") == "Practitioner":
                unit = self.role_of(unit)
            if unit.get("resourceType") == "PractitionerRole":
                unit = self.resolve(unit.get("organization"))
            named = self.named_as(unit)
            if named is None:
                return None
            owner = "municipality" if _kind_of(unit) == "municipality" else "care-unit"
            performer = [{"reference": named}]
        else:
            return None
        code = _obj(detail.get("code"))
        categories = code_table("activity-category")
        ours = [c for c in _items(code.get("coding")) if _obj(c).get("system") == categories.system]
        description = (
            detail.get("description")
            or code.get("text")
            or next(
                (c.get("display") for c in _items(code.get("coding")) if _obj(c).get("display")),
                None,
            )
        )
        key = activity.get("id")
        if not (isinstance(key, str) and _KEY.fullmatch(key)):
            key = f"activity-{index + 1}"
            self.activity_keys[index] = key
        owned = {
            "url": urls.EXT_ACTIVITY_OWNER,
            "valueCoding": code_table("activity-owner").coding(owner),
        }
        read_as = {
            **activity,
            "id": key,
            "detail": {
                **detail,
                "extension": [*_items(detail.get("extension")), owned],
                "code": {"coding": ours or [categories.coding("other")]},
                "description": description,
                "performer": performer or detail.get("performer"),
            },
        }
        return self.activity(read_as, contract_id, at, path)

    def goal(self, goal: Resource, contract_id: str, path: str) -> Resource:
        at = self.path(goal)
        self.source(path, at)
        achievement = _text(_first(_obj(goal.get("achievementStatus")).get("coding")).get("code"))
        lifecycle = _text(goal.get("lifecycleStatus"))
        status = _GOAL_STATUS.get((lifecycle, achievement))
        if status is None:
            self.issue(
                f"{at}.lifecycleStatus",
                f"lifecycleStatus {lifecycle} with achievementStatus {achievement} is not a "
                "goal status we know: proposed, active, completed (achieved or not-achieved) "
                "or cancelled",
            )
        due = _first(goal.get("target")).get("dueDate")
        self.source(f"{path}.description", f"{at}.description.text")
        self.source(f"{path}.due", f"{at}.target[0].dueDate")
        data: Resource = {
            "key": self.local_key(goal, urls.ID_GOAL, contract_id, f"{path}.key"),
            "description": _obj(goal.get("description")).get("text"),
            "status": status or GoalStatus.ACTIVE,
            "confidentiality": element.confidentiality_of(goal),
        }
        if due is not None:
            data["due"] = due
        return data

    def agreed_time(self, appointment: Resource, contract_id: str, path: str) -> Resource:
        at = self.path(appointment)
        self.source(path, at)
        data: Resource = {}
        for participant in _items(appointment.get("participant")):
            actor = self.resolve(_obj(participant).get("actor"))
            if actor.get("resourceType") == "HealthcareService":
                organization = self.get(
                    actor.get("providedBy"), "Organization", f"{self.path(actor)}.providedBy"
                )
                if organization is not None:
                    data["organization"] = self.organization(organization, f"{path}.organization")
            elif actor.get("resourceType") == "PractitionerRole":
                data["professional"] = self.professional(actor, f"{path}.professional")
        if "organization" not in data:
            self.source(f"{path}.organization", f"{at}.participant")
            self.issue(f"{at}.participant", "must name the care unit: its HealthcareService")
        time_types = [
            _obj(c).get("code")
            for concept in _items(appointment.get("serviceType"))
            for c in _items(_obj(concept).get("coding"))
            if _obj(c).get("system") == urls.CS_TIME_TYPE
        ]
        slots = [
            str(_obj(s).get("reference", "")).removeprefix("Slot/").split("/_history/")[0]
            for s in _items(appointment.get("slot"))
        ]
        for field, element_path in (
            ("description", f"{at}.description"),
            ("status", f"{at}.status"),
            ("start", f"{at}.start"),
            ("end", f"{at}.end"),
            ("time_type", f"{at}.serviceType"),
            ("slot", f"{at}.slot"),
            ("cancellation_reason", f"{at}.cancelationReason.text"),
        ):
            self.source(f"{path}.{field}", element_path)
        data.update(
            key=self.local_key(appointment, urls.ID_AGREED_TIME, contract_id, f"{path}.key"),
            description=appointment.get("description"),
            status=appointment.get("status"),
            start=appointment.get("start"),
            end=appointment.get("end"),
            confidentiality=element.confidentiality_of(appointment),
            time_type=time_types[0] if time_types else None,
            slot=slots[0] if slots else None,
            cancellation_reason=_obj(appointment.get("cancelationReason")).get("text"),
        )
        try:
            data["care_guarantee"] = element.guarantee_verdict_of(appointment)
        except (KeyError, TypeError, ValueError):
            self.issue(f"{at}.extension", "the care-guarantee verdict extension is incomplete")
        try:
            data["hold"] = element.appointment_hold_of(appointment)
        except (KeyError, TypeError, ValueError):
            self.issue(f"{at}.extension", "the hold extension is incomplete")
        try:
            data["online_rules"] = element.online_rules_of(appointment)
        except (KeyError, TypeError, ValueError):
            self.issue(f"{at}.extension", "the online-rules extension is incomplete")
        return data

    def signatures(self, careplan: Resource) -> list[SignedContents]:
        """The parties' own signatures of any version of ``careplan`` (whether they hold for
        the contents read is `valid_signatures`' to say). One that cannot be read as ours is
        no signature: it is not refused, it does not count."""
        signed: list[SignedContents] = []
        prefix = f"CarePlan/{careplan.get('id')}/_history/"
        for provenance in self.resources:
            if provenance.get("resourceType") != "Provenance" or not _tagged(
                provenance, urls.TAG_SIGNATURE
            ):
                continue
            targets = [_obj(t).get("reference") for t in _items(provenance.get("target"))]
            version = next(
                (
                    t.removeprefix(prefix)
                    for t in targets
                    if isinstance(t, str) and t.startswith(prefix)
                ),
                "",
            )
            for each in _items(provenance.get("signature")):
                signature = _obj(each)
                digest = digest_of_data(str(signature.get("data", "")))
                party = _SIGNING_PARTY.get(
                    str(self.resolve(signature.get("onBehalfOf")).get("resourceType"))
                )
                if not version.isdigit() or digest is None or party is None:
                    continue
                try:
                    read = Signature(
                        party=party, signed_at=signature.get("when"), version=int(version)
                    )
                except ValidationError:
                    continue
                signed.append(SignedContents(read, digest))
        return signed

    def agreements(self, careplan: Resource, version: int | None) -> list[Resource]:
        # Stored: the Provenance names this CarePlan version. Unsent: it names the fullUrl.
        this_version = {
            f"CarePlan/{careplan.get('id')}/_history/{version}",
            self.full_urls.get(id(careplan), ""),
        } - {""}
        agreements: list[Resource] = []
        for provenance in self.resources:
            if provenance.get("resourceType") != "Provenance" or not _is_agreement(provenance):
                continue
            targets = [_obj(t).get("reference") for t in _items(provenance.get("target"))]
            if not this_version.intersection(t for t in targets if isinstance(t, str)):
                continue
            at = self.path(provenance)
            for index, signature in enumerate(_items(provenance.get("signature"))):
                # An attested agreement is signed by the unit on the party's behalf.
                signed = _obj(signature)
                who = self.resolve(signed.get("onBehalfOf") or signed.get("who"))
                party = (
                    AgreementParty.PATIENT
                    if who.get("resourceType") == "Patient"
                    else AgreementParty.RESPONSIBLE_CLINICIAN
                )
                attested = any(
                    _obj(t).get("code") == ATTESTED_SIGNATURE["code"]
                    for t in _items(signed.get("type"))
                )
                self.source(f"$.agreements[{len(agreements)}]", f"{at}.signature[{index}]")
                agreements.append(
                    {"party": party, "agreed_at": signed.get("when"), "attested": attested}
                )
        return agreements

    # Elements

    def identifier(
        self, resource: Resource, path: str, *, other: bool = False, required: bool = True
    ) -> Resource | None:
        """The national identifier ``resource`` carries; with ``other``, else the first one of
        another issuer's (a patient from another country's plan). Not ``required``: None when
        it has neither (our own keys aside)."""
        at = self.path(resource)
        self.source(path, f"{at}.identifier")
        identifiers = [_obj(i) for i in _items(resource.get("identifier"))]
        for index, identifier in enumerate(identifiers):
            kind = kind_for(str(identifier.get("system", "")))
            if kind is not None:
                self.source(path, f"{at}.identifier[{index}]")
                self.source(f"{path}.value", f"{at}.identifier[{index}].value")
                return {"kind": kind, "value": identifier.get("value")}
        for index, identifier in enumerate(identifiers):
            system, value = identifier.get("system"), identifier.get("value")
            ours = str(system).startswith(urls.BASE)
            if other and not ours and isinstance(system, str) and isinstance(value, str):
                self.source(path, f"{at}.identifier[{index}]")
                self.source(f"{path}.system", f"{at}.identifier[{index}].system")
                self.source(f"{path}.value", f"{at}.identifier[{index}].value")
                return {"kind": "other", "system": system, "value": value}
        if not required:
            return None
        self.issue(
            f"{at}.identifier",
            "must hold a national identifier (personnummer, samordningsnummer, HSA-id, "
            "fødselsnummer, D-nummer, HPR-nummer or organisasjonsnummer)"
            + (", or another issuer's with its system" if other else ""),
        )
        return None

    def name(self, resource: Resource, path: str) -> Resource | None:
        at = f"{self.path(resource)}.name[0]"
        self.source(path, at)
        self.source(f"{path}.family", f"{at}.family")
        name = _first(resource.get("name"))
        if not name:
            return None
        return {"family": name.get("family"), "given": _items(name.get("given"))}

    def contacts(self, resource: Resource, path: str) -> list[Resource]:
        at = self.path(resource)
        contacts: list[Resource] = []
        for index, contact in enumerate(_items(resource.get("telecom"))):
            self.source(f"{path}.contacts[{index}]", f"{at}.telecom[{index}]")
            contacts.append(
                {"system": _obj(contact).get("system"), "value": _obj(contact).get("value")}
            )
        return contacts

    def period(self, data: Resource, field: str, period: Any, path: str, at: str) -> None:
        if period:
            self.source(path, at)
            self.source(f"{path}.start", f"{at}.start")
            self.source(f"{path}.end", f"{at}.end")
            # FHIR's dateTimes; the contract holds the day (the time is kept as sent).
            data[field] = {
                k: v[:10] if isinstance(v, str) and _DATE_TIME.fullmatch(v) else v
                for k, v in _obj(period).items()
                if k in ("start", "end")
            }

    def code(self, concept: Resource, table: str, at: str) -> str | None:
        codes = code_table(table)
        for coding in _items(concept.get("coding")):
            code = _obj(coding).get("code")
            if _obj(coding).get("system") == codes.system and isinstance(code, str):
                if self.codes and code not in codes.names:
                    # Said as `unknown_codes` says it, so that it is said once.
                    self.issue(at, f"unknown {table} code {code!r}")
                return code
        theirs = next((_obj(c) for c in _items(concept.get("coding")) if _obj(c).get("code")), {})
        if table == "care-team-role" and theirs:
            # What would let the service read it: the sender's code mapped to one of ours.
            self.issue(
                at,
                f"must hold a coding of {codes.system}, or one mapped to it: add "
                f"{theirs.get('system')}|{theirs.get('code')} to the ConceptMap "
                "mappings/conceptmaps/care-team-role-from-other-systems.json",
            )
            return None
        self.issue(at, f"must hold a coding of {codes.system}")
        return None

    def extension_code(self, element_: Resource, url: str, at: str, table: str) -> str | None:
        value = self.extension_value(element_, url, "valueCoding", at)
        if value is None:
            return None
        code = _obj(value).get("code")
        if _obj(value).get("system") != code_table(table).system or not isinstance(code, str):
            self.issue(f"{at}.extension", f"extension {url} must hold a coding of {table}")
            return None
        return code

    def extension_value(self, element_: Resource, url: str, kind: str, at: str) -> Any:
        for extension in _items(element_.get("extension")):
            if _obj(extension).get("url") == url and kind in extension:
                return extension[kind]
        self.issue(f"{at}.extension", f"needs the extension {url} ({kind})")
        return None

    def local_key(self, resource: Resource, system: str, contract_id: str, path: str) -> str:
        """The record's key in the contract (``path`` is the key's JSON path). A client's
        record without one of ours gets one (see ``sender_key``)."""
        at = self.path(resource)
        kind = str(resource.get("resourceType"))
        self.source(path, f"{at}.identifier")
        for index, identifier in enumerate(_items(resource.get("identifier"))):
            value = _obj(identifier).get("value")
            if (
                _obj(identifier).get("system") == system
                and isinstance(value, str)
                and value.startswith(f"{contract_id}/")
            ):
                self.source(path, f"{at}.identifier[{index}].value")
                self.origins[(kind, system, value)] = resource
                return value[len(contract_id) + 1 :]
        key = self.sender_key(resource)
        self.origins[(kind, system, f"{contract_id}/{key}")] = resource
        return key

    def sender_key(self, resource: Resource) -> str:
        """A key for a client's record that has none of ours: from its fullUrl or id, so that
        the same Bundle sent again gives the same keys; else from its place in the Bundle."""
        if id(resource) not in self.keys:
            sent_as = self.full_urls.get(id(resource), "").rsplit(":", 1)[-1] or resource.get("id")
            index = self.path(resource).removeprefix("Bundle.entry[").split("]")[0]
            key = sent_as if isinstance(sent_as, str) and _KEY.fullmatch(sent_as) else index
            self.keys[id(resource)] = f"{str(resource.get('resourceType')).lower()}-{key}"
        return self.keys[id(resource)]

    def attempt(
        self, model: type[BaseModel], read: Callable[..., Resource | None], *args: Any
    ) -> Any:
        """What ``read(*args)`` reads, if it reads as a ``model`` without a problem; else None,
        and nothing said: a client's record the contract cannot take is kept as sent."""
        before = (list(self.issues), dict(self.sources), dict(self.origins))
        keys, roles = dict(self.activity_keys), list(self.roles)
        data = read(*args)
        try:
            if data is None or len(self.issues) > len(before[0]):
                raise ValueError("not one of the contract's")
            model.model_validate(_present(data))
        except ValueError:  # pydantic's ValidationError is one
            self.issues, self.sources, self.origins = before
            self.activity_keys, self.roles = keys, roles
            return None
        return data


def _title_of(careplan: Resource) -> Any:
    """The plan's title; a plan without one is called by its description, its category or
    what it addresses (None: by no name of its own, see ``untitled``)."""
    title = careplan.get("title")
    if title is not None:
        return title
    category = _first(careplan.get("category"))
    named = [careplan.get("description"), category.get("text")]
    named += [_obj(c).get("display") for c in _items(category.get("coding"))]
    named.append(_first(careplan.get("addresses")).get("display"))
    return next((n[:_TITLE_LENGTH] for n in named if isinstance(n, str) and n.strip()), None)


def _language_for(careplan: Resource, data: Resource) -> Language:
    """The language to name an untitled plan in: its own, else its unit's country's."""
    said = careplan.get("language")
    if isinstance(said, str) and language_of(said):
        return language_of(said) or "sv"
    unit = _obj(_obj(data.get("responsible_unit")).get("identifier"))
    return "nb" if unit.get("kind") == "organisasjonsnummer" else "sv"


def _kind_of(organization: Resource) -> str | None:
    """A sender's organization's kind, where it has none of ours (None: ours says it): a
    municipality (kommun, kommune) says so in its name or type, and any other is a care unit."""
    if any(_has_coding_of(_obj(t), "organization-kind") for t in _items(organization.get("type"))):
        return None
    said = json.dumps([organization.get("name"), organization.get("type")], ensure_ascii=False)
    return "municipality" if _MUNICIPALITY.search(said.lower()) else "care-unit"


def _has_coding_of(concept: Resource, table: str) -> bool:
    system = code_table(table).system
    return any(_obj(c).get("system") == system for c in _items(concept.get("coding")))


def _contained(reference: Any) -> bool:
    return str(_obj(reference).get("reference", "")).startswith("#")


def _has_id_under(resource: Resource, system: str, prefix: str) -> bool:
    """Whether ``resource`` has an identifier of ``system`` whose value starts with ``prefix``."""
    return any(
        _obj(i).get("system") == system and str(_obj(i).get("value", "")).startswith(prefix)
        for i in _items(resource.get("identifier"))
    )


def _has_extension(element_: Resource, url: str) -> bool:
    return any(_obj(e).get("url") == url for e in _items(element_.get("extension")))


_REPORTER = {
    "Patient": Reporter.PATIENT,
    "RelatedPerson": Reporter.RELATIVE,
    "Organization": Reporter.CARE_UNIT,
}
"""Who reported an activity's progress, by the record its Annotation names as author."""

_SIGNING_PARTY = {
    "Patient": AgreementParty.PATIENT,
    "PractitionerRole": AgreementParty.RESPONSIBLE_CLINICIAN,
    "Organization": AgreementParty.RESPONSIBLE_CLINICIAN,
}
"""Whose signature it is, by the record it is given for: the patient's own, or the
responsible clinician's role (or the unit, when the contract names no clinician)."""


def _is_agreement(provenance: Resource) -> bool:
    # A change's Provenance carries the signatures too when it is the agreement; counting
    # both would agree twice.
    return _tagged(provenance, urls.TAG_AGREEMENT)


def _tagged(resource: Resource, system: str) -> bool:
    tags = _items(_obj(resource.get("meta")).get("tag"))
    return any(_obj(tag).get("system") == system for tag in tags)


def _has_id(resource: Resource, system: str, value: str) -> bool:
    return any(
        _obj(i).get("system") == system and _obj(i).get("value") == value
        for i in _items(resource.get("identifier"))
    )
