"""What a sender wrote beyond the contract's fields is kept when the contract is read and given
back when it is written (``tests/data/sent/``: an EHR's additions to one of our examples)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from fhir_service.contract import Contract, lifecycle
from fhir_service.mapping.from_fhir import contract_from_bundle
from fhir_service.mapping.sent import carried_over
from fhir_service.mapping.to_fhir import agreed_time_bundle, contract_to_bundle
from tests.support import bundle_names, load_data, losses, named

Resource = dict[str, Any]
CONTRACT = "ehr-sent-1"
PATIENT = "194103142388"


def _sent() -> Resource:
    return load_data(
        "sent/elderly-psychiatry-from-an-ehr.bundle.json", contract=CONTRACT, patient=PATIENT
    )


def _identity(resource: Resource) -> tuple[str, str, str]:
    first = resource["identifier"][0]
    return resource["resourceType"], first["system"], first["value"]


def _by_identity(bundle: Resource) -> dict[tuple[str, str, str], Resource]:
    return {_identity(e["resource"]): e["resource"] for e in bundle["entry"]}


def _losses(sent: Resource, written: Resource) -> dict[str, list[str]]:
    return losses(
        [named(e["resource"], bundle_names(sent)) for e in sent["entry"]],
        [named(e["resource"], bundle_names(written)) for e in written["entry"]],
    )


def test_every_element_an_ehr_sent_is_written_back() -> None:
    sent = _sent()

    contract = contract_from_bundle(sent, sent=True)
    written = contract_to_bundle(contract)

    assert _losses(sent, written) == {}
    # What the JSON facade has a field for, it reads.
    assert contract.description == "Sender's own description of the plan"
    assert contract.activities[0].goals == (contract.goals[0].key,)
    relative = contract.relatives[0].identifier
    assert relative is not None
    assert (relative.kind, relative.value) == ("personnummer", "195107053380")
    careplan = next(r for r in _by_identity(written).values() if r["resourceType"] == "CarePlan")
    assert careplan["text"]["status"] == "additional", "the sender's own narrative is shown"
    activity = careplan["activity"][0]["detail"]
    assert activity["code"]["coding"][0]["system"].endswith("activity-category"), "ours first"
    assert activity["goal"][0]["reference"] in {e["fullUrl"] for e in written["entry"]}


def test_reading_what_was_written_keeps_the_same_and_writes_the_same() -> None:
    contract = contract_from_bundle(_sent(), sent=True)
    written = contract_to_bundle(contract)

    again = contract_from_bundle(written, sent=True)

    assert again == contract
    assert again.sent == contract.sent
    assert contract_to_bundle(again) == written


def test_an_element_the_contract_holds_is_written_as_the_contract_says() -> None:
    contract = contract_from_bundle(_sent(), sent=True)
    goal = contract.goals[0].model_copy(update={"description": "Sova hela natten"})
    changed = contract.model_copy(update={"goals": (goal, *contract.goals[1:])})

    written = _by_identity(contract_to_bundle(changed))

    stored = next(r for r in written.values() if r["resourceType"] == "Goal")
    assert stored["description"]["text"] == "Sova hela natten"
    assert stored["description"]["coding"][0]["code"] == "1234", "the sender's coding stays"


def test_a_link_to_a_record_the_contract_no_longer_holds_is_dropped() -> None:
    contract = contract_from_bundle(_sent(), sent=True)
    assert contract.sent is not None
    condition = next(u for u, e in contract.sent.items() if e.get("resourceType") == "Condition")
    without = contract.model_copy(
        update={"sent": {u: e for u, e in contract.sent.items() if u != condition}}
    )

    written = contract_to_bundle(without)

    urls = {e["fullUrl"] for e in written["entry"]}
    references = {r for r in _references(written) if r.startswith("urn:uuid:")}
    assert condition not in urls
    assert references <= urls, "no reference names a record the Bundle does not write"
    careplan = _careplan(written)
    assert "addresses" not in careplan
    assert "reasonReference" not in careplan["activity"][0]["detail"]
    assert careplan["activity"][0]["progress"] == [{"text": "Went well"}], "the rest stays"


def _references(value: Any) -> list[str]:
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    if isinstance(value, dict):
        found = [r for v in value.values() for r in _references(v)]
        if isinstance(value.get("reference"), str):
            found.append(value["reference"])
        return found
    return []


def test_a_lifecycle_step_keeps_what_was_sent() -> None:
    contract = contract_from_bundle(_sent(), sent=True)

    revoked = lifecycle.revoke(contract)

    assert revoked.sent == contract.sent
    assert revoked.sent


def test_a_change_made_elsewhere_keeps_all_but_the_senders_narrative() -> None:
    contract = contract_from_bundle(_sent(), sent=True)
    assert contract.sent is not None

    kept = carried_over(contract.sent)

    assert all("text" not in elements for elements in kept.values())
    assert sum(len(e) for e in kept.values()) == sum(len(e) for e in contract.sent.values()) - 1


def test_booking_one_time_keeps_its_elements_and_names_the_others_by_identifier() -> None:
    contract = contract_from_bundle(_sent(), sent=True)
    time = contract.agreed_times[0]

    bundle = agreed_time_bundle(contract, time.key, server_id="71", version="3")

    appointment = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Appointment"
    )
    assert appointment["comment"] == "Bring the list of medicines"
    assert {"system": "urn:oid:1.2.752.999.3", "value": "A-1"} in appointment["identifier"]
    entries = {e["fullUrl"] for e in bundle["entry"]}
    for reference in _references(bundle):
        assert reference in entries or "?identifier=" in reference or "/" in reference


def test_no_caller_sets_what_was_sent_nor_reads_it_in_the_json_form() -> None:
    contract = contract_from_bundle(_sent(), sent=True)
    document = contract.model_dump(mode="json")

    with pytest.raises(ValidationError) as refused:
        Contract.model_validate({**document, "sent": {"urn:uuid:x": {"comment": "sneaked"}}})

    assert "sent" not in document
    assert "sent" not in Contract.model_json_schema()["properties"]
    assert refused.value.errors()[0]["loc"] == ("sent",)


def test_a_stale_element_of_ours_sent_back_is_replaced_not_kept_beside() -> None:
    sent = _sent()
    careplan = next(
        e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    for extension in careplan["extension"]:
        if extension["url"].endswith("/contract-status"):
            extension["valueCoding"]["display"] = "Something a client left behind"

    written = contract_to_bundle(contract_from_bundle(sent, sent=True))

    stored = next(r for r in _by_identity(written).values() if r["resourceType"] == "CarePlan")
    statuses = [e for e in stored["extension"] if e["url"].endswith("/contract-status")]
    assert len(statuses) == 1
    assert statuses[0]["valueCoding"]["display"] != "Something a client left behind"


def test_a_plain_r4_plan_is_read_as_far_as_it_is_a_contract_and_written_back_whole() -> None:
    # Another EHR's plan: its own identifier, care team and roles, a contained goal, an
    # activity without our owner extension, one its performer's role makes the unit's, a
    # ServiceRequest activity and a note of no kind of ours (tests/data/sent/README.md).
    sent = load_data(
        "sent/plain-r4-plan.bundle.json",
        plan="7",
        patient=PATIENT,
        description="Efter operation",
        clinician="SE2321000065-7802",
        unit="SE2321000065-1254",
    )

    contract = contract_from_bundle(sent, codes=True, sent=True, new_id="plan-7")
    written = contract_to_bundle(contract)

    assert contract.id == "plan-7"
    activity, review = contract.activities
    assert (activity.owner, activity.category, activity.description) == (
        "patient",
        "other",
        "Daglig promenad",
    )
    assert (review.owner, review.description) == ("care-unit", "Läkemedelsgenomgång")
    assert review.organization is not None
    assert review.organization.identifier.value == "SE2321000065-1254"
    assert [g.description for g in contract.goals] == ["Gå 30 minuter varje dag"]
    assert (contract.patient_resources, contract.wishes) == ((), ())
    contact = contract.care_contacts[0]
    assert (contact.kind, contact.professional.role, str(contact.period)) == (
        "fast-vardkontakt",
        "nurse",
        "start=datetime.date(2026, 10, 1) end=None",
    )
    assert contract.professionals == (), "the author is the responsible clinician, not twice"
    assert _losses(sent, written) == {}
    kinds = [e["resource"]["resourceType"] for e in written["entry"]]
    assert kinds.count("PractitionerRole") == 2, "the sender's roles are ours, not more"
    assert kinds.count("Goal") == 1, "the contained goal stays contained"
    assert {"ServiceRequest", "CareTeam"} <= set(kinds)
    assert contract_from_bundle(written, sent=True) == contract


def _plain(**changes: Any) -> Resource:
    sent = load_data(
        "sent/plain-r4-plan.bundle.json",
        plan="8",
        patient=PATIENT,
        description="Efter operation",
        clinician="SE2321000065-7802",
        unit="SE2321000065-1254",
    )
    careplan = next(
        e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    careplan.update(changes)
    return sent


def test_a_plan_without_a_title_is_called_by_its_description() -> None:
    sent = _plain()
    careplan = next(
        e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )
    del careplan["title"]

    contract = contract_from_bundle(sent, sent=True, new_id="plan-8")

    assert contract.title == "Efter operation"
    assert _losses(sent, contract_to_bundle(contract)) == {}


@pytest.mark.parametrize(
    ("language", "called"), [(None, "Vårdplan"), ("nb", "Plan"), ("en", "Care plan")]
)
def test_a_plan_with_no_name_of_its_own_is_called_a_care_plan_in_its_language(
    language: str | None, called: str
) -> None:
    sent = _plain()
    careplan = _careplan(sent)
    for element in ("title", "description"):
        del careplan[element]
    if language:
        careplan["language"] = language

    contract = contract_from_bundle(sent, sent=True, new_id="plan-8")

    assert contract.title == called
    assert _losses(sent, contract_to_bundle(contract)) == {}


def test_a_time_the_sender_wrote_stays_while_the_day_is_the_contracts() -> None:
    sent = _plain(period={"start": "2026-10-01T08:30:00+02:00", "end": "2027-01-31"})

    contract = contract_from_bundle(sent, sent=True, new_id="plan-8")
    written = contract_to_bundle(contract)
    assert contract.period is not None
    moved = contract.model_copy(
        update={"period": contract.period.model_copy(update={"start": date(2026, 11, 2)})}
    )
    rewritten = contract_to_bundle(moved)

    assert str(contract.period.start) == "2026-10-01"
    assert _careplan(written)["period"] == {
        "start": "2026-10-01T08:30:00+02:00",
        "end": "2027-01-31",
    }
    assert _careplan(rewritten)["period"]["start"] == "2026-11-02", "a new day is the contract's"


def _careplan(bundle: Resource) -> Resource:
    return next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    )


def test_a_patient_known_only_by_another_issuers_number_is_that_number() -> None:
    sent = _plain()
    patient = next(
        e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    mrn = {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}
    patient["identifier"] = [{"use": "usual", **mrn}]

    contract = contract_from_bundle(sent, sent=True, new_id="plan-8")
    written = contract_to_bundle(contract)

    assert contract.patient.identifier.model_dump() == {"kind": "other", **mrn}
    stored = next(
        e["resource"] for e in written["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert stored["identifier"] == [{**mrn, "use": "usual"}]
    assert _losses(sent, written) == {}
    assert contract_from_bundle(written, sent=True) == contract


def test_an_author_named_as_a_person_is_responsible_in_the_role_the_bundle_gives_them() -> None:
    sent = _plain()
    careplan = _careplan(sent)
    role = next(
        e["resource"] for e in sent["entry"] if e["fullUrl"] == careplan["author"]["reference"]
    )
    careplan["author"] = {"reference": role["practitioner"]["reference"], "display": "Erik"}

    contract = contract_from_bundle(sent, sent=True, new_id="plan-8")
    written = contract_to_bundle(contract)

    assert contract.responsible_clinician.identifier.value == "SE2321000065-7802"
    assert contract.responsible_clinician.organization.identifier.value == "SE2321000065-1254"
    # The one change: the author is named in their role, the same person more precisely.
    assert _losses(sent, written) == {
        "CarePlan|urn:oid:1.2.752.999.9|PLAN-8": [".author.reference"]
    }
    author = next(
        e["resource"]
        for e in written["entry"]
        if e["fullUrl"] == _careplan(written)["author"]["reference"]
    )
    person = next(
        e["resource"]
        for e in written["entry"]
        if e["fullUrl"] == author["practitioner"]["reference"]
    )
    assert person["identifier"][0]["value"] == "SE2321000065-7802"
    assert _careplan(written)["author"]["display"] == "Erik"


def test_a_relative_of_any_personal_relationship_fhir_names_is_taken() -> None:
    sent = _sent()
    relative = next(
        e["resource"] for e in sent["entry"] if e["resource"]["resourceType"] == "RelatedPerson"
    )
    wife = {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "WIFE"}
    relative["relationship"] = [{"coding": [wife]}]

    contract = contract_from_bundle(sent, codes=True, sent=True)
    written = contract_to_bundle(contract, "sv")

    assert contract.relatives[0].relationship == "WIFE"
    stored = next(
        e["resource"] for e in written["entry"] if e["resource"]["resourceType"] == "RelatedPerson"
    )
    assert stored["relationship"] == [{"coding": [{**wife, "display": "wife"}]}]
    assert (
        "(wife)"
        in _careplan(contract_to_bundle(contract.model_copy(update={"sent": None})))["text"]["div"]
    ), "named in English where the table has no Swedish name"
