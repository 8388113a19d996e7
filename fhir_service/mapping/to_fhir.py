"""A contract as one FHIR R4 transaction Bundle.

Shared records (Patient, Organization, Practitioner, PractitionerRole, HealthcareService) are
conditional creates: made once, found by identifier ever after. The contract's own resources
(CarePlan, CareTeams, Goals, Appointments, RelatedPersons) are conditional updates by business
identifier, so re-posting an unchanged contract writes nothing new. An agreed contract carries a
Provenance with both signatures, put under an id derived from the agreement itself.

Every ``fullUrl`` is a name-based UUID of the record's identity, so one contract always maps to
the same Bundle, byte for byte.
"""

from __future__ import annotations

from typing import Any

from fhir_service.contract import (
    Activity,
    ActivityOwner,
    AgreedTime,
    AgreedTimeStatus,
    CareContact,
    Confidentiality,
    Contract,
    ContractStatus,
    Goal,
    GoalStatus,
    Organization,
    Professional,
    Relative,
    Reporter,
)
from fhir_service.mapping import elements as element
from fhir_service.mapping import urls
from fhir_service.mapping.elements import identity_url
from fhir_service.mapping.narrative import narrative
from fhir_service.mapping.provenance import agreement_entry
from fhir_service.mapping.sent import is_record, merged
from fhir_service.mapping.tables import Language, code_table, language_of, relationships

__all__ = [
    "CAREPLAN_STATUS",
    "agreed_time_bundle",
    "care_unit_entries",
    "contract_records",
    "contract_to_bundle",
]

Resource = dict[str, Any]

CAREPLAN_STATUS: dict[ContractStatus, str] = {
    ContractStatus.DRAFT: "draft",
    ContractStatus.AGREED: "active",
    # The agreed version stays in force while the next one is worked out.
    ContractStatus.REVISED: "active",
    ContractStatus.COMPLETED: "completed",
    ContractStatus.ENDED: "revoked",
    ContractStatus.REVOKED: "revoked",
}
_GOAL_STATUS: dict[GoalStatus, tuple[str, str | None]] = {
    GoalStatus.PROPOSED: ("proposed", None),
    GoalStatus.ACTIVE: ("active", None),
    GoalStatus.ACHIEVED: ("completed", "achieved"),
    GoalStatus.NOT_ACHIEVED: ("completed", "not-achieved"),
    GoalStatus.CANCELLED: ("cancelled", None),
}
_PARTICIPANT_STATUS: dict[AgreedTimeStatus, str] = {
    AgreedTimeStatus.PROPOSED: "needs-action",
    AgreedTimeStatus.PENDING: "tentative",
    AgreedTimeStatus.BOOKED: "accepted",
    AgreedTimeStatus.FULFILLED: "accepted",
    AgreedTimeStatus.CANCELLED: "declined",
    AgreedTimeStatus.NOSHOW: "accepted",
}
_ACHIEVEMENT = "http://terminology.hl7.org/CodeSystem/goal-achievement"


def _label(resource: Resource, confidentiality: Confidentiality) -> None:
    # Each resource carries its own label only, so that reading it back gives what was written;
    # a restricted contract's goals and times are withheld with it by whoever reads the plan.
    labels = element.security_labels(confidentiality)
    if labels:
        resource.setdefault("meta", {})["security"] = labels


def contract_to_bundle(
    contract: Contract,
    language: Language = "sv",
    *,
    new: bool = False,
    if_version: tuple[str, int] | None = None,
) -> Resource:
    """The transaction Bundle that writes ``contract``; the narrative is in the contract's
    language, or in ``language`` when that is one we write no narrative in (German, ...).

    ``new``: the contract's own records are conditional creates too, so that a contract that
    exists already is left as it is (the CarePlan's entry then answers ``200 OK``).
    ``if_version``: ``(server id, version)`` of the stored CarePlan; it is written by id only if
    that is still its version (optimistic locking), otherwise the whole transaction fails with
    409 and nothing is written. (HAPI ignores ``ifMatch`` on a conditional update, so the
    CarePlan is addressed by id here.)
    """
    # The CarePlan version this transaction writes: the first, or the one after the stored one.
    written = 1 if new else None if if_version is None else if_version[1] + 1
    builder = _Builder(contract, new=new, version=written)
    bundle = builder.bundle(language)
    merged(bundle["entry"], contract.sent or {}, {url: url for url in builder.entries})
    careplan = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan")
    if contract.status is not ContractStatus.DRAFT and careplan["resource"]["intent"] == "proposal":
        # A sender's proposal is a plan once it is more than a draft.
        careplan["resource"]["intent"] = "plan"
    for url in builder.shared.intersection(contract.sent or {}):
        # A shared record the sender told more of than the contract holds is written as they
        # sent it, not only created when absent: a patient's record another plan created
        # first is brought up to this sender's (the latest) word, links included.
        request = builder.entries[url]["request"]
        builder.entries[url]["request"] = {
            "method": "PUT",
            "url": f"{request['url']}?{request['ifNoneExist']}",
        }
    if if_version is not None:
        server_id, version = if_version
        careplan["resource"]["id"] = server_id
        careplan["request"] = {
            "method": "PUT",
            "url": f"CarePlan/{server_id}",
            "ifMatch": f'W/"{version}"',
        }
    return bundle


def agreed_time_bundle(contract: Contract, key: str, *, server_id: str, version: str) -> Resource:
    """A transaction Bundle that writes only the agreed time ``key`` of ``contract``.

    Its Appointment is written by ``server_id`` only if it is still at ``version`` (so a
    concurrent change fails the whole transaction with 409), beside the shared records it names
    (conditional creates, no-ops when they exist, which `fhir_service.mapping.stored.resolved`
    names by id where a read found them). The CarePlan is not written: booking a time the
    contract holds changes the time, not what was agreed.
    """
    time = next((t for t in contract.agreed_times if t.key == key), None)
    if time is None:
        raise ValueError(f"contract {contract.id!r} has no agreed time {key!r}")
    builder = _Builder(contract, version=None)
    url = builder.appointment(time, builder.patient())
    if contract.sent:
        # The time's kept elements may name any record of the contract: those not written
        # here are named by identifier, for the server to resolve. (Only then is the whole
        # contract mapped: a booking of a contract with nothing kept does not pay for it.)
        known = {
            other: other if other in builder.entries else _conditional(resource)
            for other, resource in contract_records(contract).items()
        }
        merged(list(builder.entries.values()), contract.sent, known)
    entry = builder.entries[url]
    entry["resource"]["id"] = server_id
    entry["request"] = {
        "method": "PUT",
        "url": f"Appointment/{server_id}",
        "ifMatch": f'W/"{version}"',
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": list(builder.entries.values()),
    }


def contract_records(contract: Contract) -> dict[str, Resource]:
    """Every record ``contract`` is written as (narrative and agreement aside), by fullUrl."""
    builder = _Builder(contract, version=None)
    bundle = builder.bundle("sv", records_only=True)
    return {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}


def _conditional(resource: Resource) -> str:
    identifier = resource["identifier"][0]
    return f"{resource['resourceType']}?identifier={identifier['system']}|{identifier['value']}"


def care_unit_entries(organization: Organization) -> tuple[list[Resource], str]:
    """Transaction entries that make sure ``organization`` and its HealthcareService exist
    (conditional creates), and the fullUrl that refers to the HealthcareService among them."""
    records = _SharedRecords()
    url = records.healthcare_service(organization)
    return list(records.entries.values()), url


class _SharedRecords:
    """Records many contracts name (people, units): created only if absent."""

    def __init__(self) -> None:
        self.entries: dict[str, Resource] = {}
        self.shared: set[str] = set()
        """The entries of shared records, by fullUrl."""

    def _shared(self, resource_type: str, identifier: Resource, resource: Resource) -> str:
        url = identity_url(resource_type, identifier["system"], identifier["value"])
        self.shared.add(url)
        if url not in self.entries:
            query = f"identifier={identifier['system']}|{identifier['value']}"
            self.entries[url] = {
                "fullUrl": url,
                "resource": {"resourceType": resource_type, "identifier": [identifier], **resource},
                "request": {"method": "POST", "url": resource_type, "ifNoneExist": query},
            }
        return url

    def organization(self, organization: Organization) -> str:
        kind = code_table("organization-kind").coding(organization.kind)
        return self._shared(
            "Organization",
            element.identifier(organization.identifier),
            {"active": True, "type": [{"coding": [kind]}], "name": organization.name},
        )

    def healthcare_service(self, organization: Organization) -> str:
        # R4 Appointment cannot name an Organization; the unit's HealthcareService stands in.
        org_url = self.organization(organization)
        identifier = {
            "system": urls.ID_HEALTHCARE_SERVICE,
            "value": element.key_of(organization.identifier),
        }
        return self._shared(
            "HealthcareService",
            identifier,
            {"active": True, "providedBy": {"reference": org_url}, "name": organization.name},
        )

    def practitioner_role(self, professional: Professional) -> str:
        practitioner = self._shared(
            "Practitioner",
            element.identifier(professional.identifier),
            {"name": [element.human_name(professional.name)]},
        )
        org_url = self.organization(professional.organization)
        person = element.key_of(professional.identifier)
        value = f"{person}@{element.key_of(professional.organization.identifier)}"
        role = {"coding": element.role_codings(professional.role)}
        resource: Resource = {
            "active": True,
            "practitioner": {"reference": practitioner},
            "organization": {"reference": org_url},
            "code": [role],
        }
        if professional.contacts:
            resource["telecom"] = [element.contact_point(c) for c in professional.contacts]
        identifier = {"system": urls.ID_PRACTITIONER_ROLE, "value": value}
        return self._shared("PractitionerRole", identifier, resource)


class _Builder(_SharedRecords):
    def __init__(self, contract: Contract, *, new: bool = False, version: int | None) -> None:
        super().__init__()
        self.contract = contract
        self.new = new
        self.version = version

    def _owned(self, resource_type: str, system: str, value: str, resource: Resource) -> str:
        url = identity_url(resource_type, system, value)
        identifier = {"system": system, "value": value}
        query = f"identifier={system}|{value}"
        request = (
            {"method": "POST", "url": resource_type, "ifNoneExist": query}
            if self.new
            else {"method": "PUT", "url": f"{resource_type}?{query}"}
        )
        self.entries[url] = {
            "fullUrl": url,
            "resource": {"resourceType": resource_type, "identifier": [identifier], **resource},
            "request": request,
        }
        return url

    def patient(self) -> str:
        patient = self.contract.patient
        return self._shared(
            "Patient",
            element.identifier(patient.identifier),
            {"name": [element.human_name(patient.name)]},
        )

    # The contract's own records: written as the contract says.

    def related_person(self, relative: Relative, patient_url: str) -> str:
        table = relationships()
        resource: Resource = {
            "patient": {"reference": patient_url},
            "relationship": [{"coding": [table.coding(relative.relationship)]}],
            "name": [element.human_name(relative.name)],
        }
        if relative.contacts:
            resource["telecom"] = [element.contact_point(c) for c in relative.contacts]
        key = f"{self.contract.id}/{relative.key}"
        url = self._owned("RelatedPerson", urls.ID_RELATED_PERSON, key, resource)
        if relative.identifier is not None:
            # The person's own, beside the key that makes the record this contract's.
            identifiers = self.entries[url]["resource"]["identifier"]
            identifiers.append(element.identifier(relative.identifier))
        return url

    def goal(self, goal: Goal, patient_url: str) -> str:
        lifecycle, achievement = _GOAL_STATUS[goal.status]
        resource: Resource = {
            "lifecycleStatus": lifecycle,
            "description": {"text": goal.description},
            "subject": {"reference": patient_url},
            "expressedBy": {"reference": patient_url},
        }
        if achievement:
            resource["achievementStatus"] = {
                "coding": [{"system": _ACHIEVEMENT, "code": achievement}]
            }
        if goal.due:
            resource["target"] = [{"dueDate": goal.due.isoformat()}]
        _label(resource, goal.confidentiality)
        return self._owned("Goal", urls.ID_GOAL, f"{self.contract.id}/{goal.key}", resource)

    def appointment(self, time: AgreedTime, patient_url: str) -> str:
        status = _PARTICIPANT_STATUS[time.status]
        participants = [
            {"actor": {"reference": patient_url}, "status": status},
            {"actor": {"reference": self.healthcare_service(time.organization)}, "status": status},
        ]
        if time.professional:
            participants.append(
                {
                    "actor": {"reference": self.practitioner_role(time.professional)},
                    "status": status,
                }
            )
        resource: Resource = {
            "meta": {"profile": [urls.PROFILE_APPOINTMENT]},
            "status": time.status.value,
            "description": time.description,
            "participant": participants,
        }
        if time.start and time.end:
            resource["start"] = element.instant(time.start)
            resource["end"] = element.instant(time.end)
        if time.time_type:
            resource["serviceType"] = [
                {"coding": [{"system": urls.CS_TIME_TYPE, "code": time.time_type}]}
            ]
        if time.slot:
            resource["slot"] = [{"reference": f"Slot/{time.slot}"}]
        if time.cancellation_reason:
            resource["cancelationReason"] = {"text": time.cancellation_reason}
        extensions = []
        if time.care_guarantee is not None:
            extensions.append(element.guarantee_verdict(time.care_guarantee))
        if time.hold is not None:
            extensions.append(element.appointment_hold(time.hold))
        if time.online_rules is not None:
            extensions.append(element.online_rules(time.online_rules))
        if extensions:
            resource["extension"] = extensions
        _label(resource, time.confidentiality)
        return self._owned(
            "Appointment", urls.ID_AGREED_TIME, f"{self.contract.id}/{time.key}", resource
        )

    def team(self, patient_url: str, relative_urls: dict[str, str]) -> str | None:
        """The contract's care team; None when no one is named (a plan naming only its
        unit)."""
        roles = code_table("care-team-role")
        clinician = self.contract.responsible_clinician
        participants: list[Resource] = []
        if clinician is not None:
            role = [{"coding": [roles.coding("responsible-clinician")]}]
            member = {"reference": self.practitioner_role(clinician)}
            participants.append({"role": role, "member": member})
        participants += [
            {
                "role": [{"coding": element.role_codings(p.role)}],
                "member": {"reference": self.practitioner_role(p)},
            }
            for p in self.contract.professionals
        ]
        participants += [
            {"role": [{"coding": [roles.coding("relative")]}], "member": {"reference": url}}
            for url in relative_urls.values()
        ]
        if not participants:
            return None
        resource: Resource = {
            "status": "active",
            "name": self.contract.title,
            "subject": {"reference": patient_url},
            "participant": participants,
        }
        return self._owned("CareTeam", urls.ID_CARE_TEAM, self.contract.id, resource)

    def care_contact_team(self, index: int, contact: CareContact, patient_url: str) -> str:
        participant: Resource = {
            "extension": [
                {"url": urls.EXT_REQUESTED_BY_PATIENT, "valueBoolean": contact.requested_by_patient}
            ],
            "role": [{"coding": [code_table("care-team-role").coding(contact.kind)]}],
            "member": {"reference": self.practitioner_role(contact.professional)},
        }
        if contact.period:
            participant["period"] = element.period(contact.period)
        resource: Resource = {
            "meta": {"profile": [urls.PROFILE_CARETEAM]},
            "status": "active",
            "subject": {"reference": patient_url},
            "participant": [participant],
            "managingOrganization": [
                {"reference": self.organization(contact.professional.organization)}
            ],
        }
        if contact.how_to_reach:
            resource["note"] = [{"text": contact.how_to_reach}]
        return self._owned(
            "CareTeam", urls.ID_CARE_TEAM, f"{self.contract.id}/care-contact/{index}", resource
        )

    def activity(
        self,
        activity: Activity,
        patient_url: str,
        relative_urls: dict[str, str],
        goal_urls: dict[str, str],
    ) -> Resource:
        owner = code_table("activity-owner").coding(activity.owner)
        detail: Resource = {
            "extension": [
                {"url": urls.EXT_ACTIVITY_OWNER, "valueCoding": owner},
                *element.activity_labels(activity.confidentiality),
            ],
            "code": {"coding": [code_table("activity-category").coding(activity.category)]},
            "status": activity.status.value,
            "description": activity.description,
        }
        if activity.schedule:
            repeat: Resource = {
                "frequency": activity.schedule.frequency,
                "period": activity.schedule.period,
                "periodUnit": activity.schedule.unit,
            }
            if activity.period:
                repeat["boundsPeriod"] = element.period(activity.period)
            detail["scheduledTiming"] = {"repeat": repeat}
        elif activity.period:
            detail["scheduledPeriod"] = element.period(activity.period)
        if activity.goals:
            detail["goal"] = [{"reference": goal_urls[key]} for key in activity.goals]
        performer = self._performer(activity, patient_url, relative_urls)
        detail["performer"] = [{"reference": performer}]
        written: Resource = {"id": activity.key, "detail": detail}
        if activity.progress is not None:
            author = {
                Reporter.PATIENT: patient_url,
                Reporter.RELATIVE: performer,
                Reporter.CARE_UNIT: self.organization(self.contract.responsible_unit),
            }[activity.progress.by]
            report = activity.progress
            status = activity.status.value
            written["progress"] = [element.progress(activity.key, report, status, author)]
        return written

    def _performer(
        self, activity: Activity, patient_url: str, relative_urls: dict[str, str]
    ) -> str:
        if activity.owner is ActivityOwner.PATIENT:
            return patient_url
        if activity.owner is ActivityOwner.RELATIVE:
            assert activity.relative is not None
            return relative_urls[activity.relative]
        assert activity.organization is not None
        return self.organization(activity.organization)

    def record(self, elements: Resource) -> str:
        """A record the sender's plan held that is none of the contract's parts: its entry,
        filled from what was kept when the kept elements are merged."""
        ours = elements["identifier"][0]
        return self._owned(elements["resourceType"], ours["system"], ours["value"], {})

    def bundle(self, language: Language, *, records_only: bool = False) -> Resource:
        """The transaction; ``records_only``: without the narrative and the agreement, for
        those who compare records, not write them."""
        contract = self.contract
        # The contract's own language when we write narratives in it, else ``language``.
        written_in = language_of(contract.language or "") or language
        patient_url = self.patient()
        unit_url = self.organization(contract.responsible_unit)
        clinician = contract.responsible_clinician
        author = None if clinician is None else self.practitioner_role(clinician)
        relative_urls = {r.key: self.related_person(r, patient_url) for r in contract.relatives}
        team_urls = list(filter(None, [self.team(patient_url, relative_urls)]))
        team_urls += [
            self.care_contact_team(i, c, patient_url) for i, c in enumerate(contract.care_contacts)
        ]
        goal_urls = {g.key: self.goal(g, patient_url) for g in contract.goals}
        activities = [
            self.activity(a, patient_url, relative_urls, goal_urls) for a in contract.activities
        ]
        activities += [
            {"reference": {"reference": self.appointment(t, patient_url)}}
            for t in contract.agreed_times
        ]
        records = [self.record(e) for e in (contract.sent or {}).values() if is_record(e)]
        contributors = [patient_url, *filter(None, [author])]
        contributors += [self.practitioner_role(p) for p in contract.professionals]
        contributors += list(relative_urls.values())
        careplan: Resource = {
            "meta": {"profile": [urls.PROFILE_CAREPLAN]},
            "extension": [
                {
                    "url": urls.EXT_CONTRACT_STATUS,
                    "valueCoding": code_table("contract-status").coding(contract.status),
                },
                {"url": urls.EXT_RESPONSIBLE_UNIT, "valueReference": {"reference": unit_url}},
            ],
            "language": contract.language,
            **(
                {}
                if records_only
                else {"text": {"status": "generated", "div": narrative(contract, written_in)}}
            ),
            "status": CAREPLAN_STATUS[contract.status],
            "intent": "plan",
            "title": contract.title,
            **({"description": contract.description} if contract.description else {}),
            "subject": {"reference": patient_url},
            **({} if author is None else {"author": {"reference": author}}),
            "contributor": [{"reference": url} for url in dict.fromkeys(contributors)],
            **({"careTeam": [{"reference": url} for url in team_urls]} if team_urls else {}),
        }
        if contract.period:
            careplan["period"] = element.period(contract.period)
        if contract.care_guarantee is not None:
            careplan["extension"].append(element.care_guarantee(contract.care_guarantee))
        if contract.patient_review is not None:
            careplan["extension"].append(element.patient_review(contract.patient_review))
        careplan["extension"] += [
            {"url": urls.EXT_CONTRACT_RECORD, "valueReference": {"reference": url}}
            for url in records
        ]
        if goal_urls:
            careplan["goal"] = [{"reference": url} for url in goal_urls.values()]
        if activities:
            careplan["activity"] = activities
        notes = [("patient-resource", text) for text in contract.patient_resources]
        notes += [("wish", text) for text in contract.wishes]
        written = [element.note(kind, text, patient_url) for kind, text in notes]
        written += [element.proposal_note(p, patient_url) for p in contract.proposals]
        if written:
            careplan["note"] = written
        _label(careplan, contract.confidentiality)
        if contract.status is ContractStatus.DRAFT and contract.patient_review is None:
            tag = {"system": urls.TAG_NOT_PROPOSED, "code": "draft"}
            careplan.setdefault("meta", {})["tag"] = [tag]
        careplan_url = self._owned("CarePlan", urls.ID_CONTRACT, contract.id, careplan)
        if contract.status is ContractStatus.AGREED and not records_only:
            entry = agreement_entry(
                contract, careplan_url, patient_url, author or unit_url, self.version
            )
            self.entries[entry["fullUrl"]] = entry
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": list(self.entries.values()),
        }
