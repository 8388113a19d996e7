"""The FHIR endpoint driven by HAPI FHIR's own Java clients, which most Java EHRs are built on.

The service runs as a process against the real HAPI. HAPI's generic client (``IGenericClient``,
FHIR R4, a ``BearerTokenAuthInterceptor``), run once from ``tests/clients/hapi``, makes what a
care unit's EHR, a booking platform and an auditor make: read, vread, instance history, a search
with ``_include`` and paging to the end, ``_elements``/``_summary``, updates with and without a
version, a create and a conditional create, a contract as a transaction, ``$coherent-plan`` and
``Appointment/$find`` by GET and by POST, and counts. Each test asserts what the client's own
objects made of the answers (ids, versions, ``MethodOutcome``, tags, totals) and what went over
the wire.

HAPI's ``FhirInstanceValidator``, given nothing but our ``/fhir`` base to resolve our profiles,
extensions, value sets and code systems from, finds no error in anything the endpoint returns for
a contract: searches with every include it declares, reads, histories, the coherent plan, and the
audit trail as an auditor reads it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from fhir_service.contract import IdentifierKind
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_for
from tests import hapi_clients
from tests.auth import TestIssuer
from tests.booking import UNIT, far_hours, publish
from tests.support import load_data, unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
SUBSETTED = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue|SUBSETTED"
# The two descriptions the client writes to the first goal: without a version, then with one.
DESCRIPTIONS = ["Gå till affären själv", "Gå till affären och bära hem varorna själv"]
NEW_GOAL = "Laga mat en gång i veckan"
CONDITIONAL_GOAL = "Gå på bowling med vännerna"
CLIENT_TIMEOUT = 600.0
VALIDATOR_TIMEOUT = 900.0
CONTRACT_TYPES = ("CarePlan", "CareTeam", "Goal", "Appointment")
OURS = "http://fhir.patient-contracts.org/"
AUDIT_WRITTEN_WITHIN = 60.0


def _ehr(issuer: TestIssuer, contract: dict[str, Any]) -> dict[str, str]:
    unit = contract["responsible_clinician"]["organization"]["identifier"]
    return issuer.headers("ehr", organization=f"{unit['kind']}|{unit['value']}")


def _stroke(contract_id: str, personnummer: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "stroke-rehabilitation.json").read_text("utf-8"))
    data["id"] = contract_id
    data["patient"]["identifier"]["value"] = personnummer
    return data


def _created(base_url: str, issuer: TestIssuer, data: dict[str, Any]) -> dict[str, Any]:
    created = httpx.post(f"{base_url}/contracts", json=data, headers=_ehr(issuer, data))
    assert created.status_code == 201, created.text
    return data


@pytest.fixture(scope="module")
def contract(base_url: str, issuer: TestIssuer) -> dict[str, Any]:
    """A draft, which records may be written to one at a time."""
    data = _stroke(f"hapi-{uuid.uuid4().hex[:12]}", unique_personnummer())
    data["status"], data["agreements"] = "draft", []
    return _created(base_url, issuer, data)


@pytest.fixture(scope="module")
def agreed(base_url: str, issuer: TestIssuer, contract: dict[str, Any]) -> dict[str, Any]:
    """An agreed contract of the same patient: the coherent plan holds it, not the draft."""
    personnummer = contract["patient"]["identifier"]["value"]
    data = _stroke(f"hapi-agreed-{uuid.uuid4().hex[:8]}", personnummer)
    data["title"] = "Rehabilitering efter stroke, överenskommen"
    return _created(base_url, issuer, data)


@pytest.fixture(scope="module")
def free_times(base_url: str, issuer: TestIssuer) -> dict[str, Any]:
    """Two nurse visits the elderly-psychiatry unit publishes for booking, and how $find asks
    for exactly them."""
    hours = far_hours()
    starts = [next(hours) for _ in range(2)]
    with httpx.Client(base_url=base_url, timeout=60.0) as service:
        slots = publish(service, issuer.headers("ehr", organization=UNIT), starts)
    kind, value = UNIT.split("|")
    asked = {
        "start": starts[0].isoformat(),
        "end": (starts[-1] + timedelta(minutes=1)).isoformat(),
        "organization": f"{system_for(IdentifierKind(kind))}|{value}",
        "visit-type": f"{urls.CS_TIME_TYPE}|nurse-visit",
    }
    return {"slots": slots, "asked": asked}


@pytest.fixture(scope="module")
def transaction() -> dict[str, Any]:
    """A new draft contract of the stroke example's unit as a transaction Bundle (the form
    ``map to-fhir`` prints), for a patient of its own."""
    bundle: dict[str, Any] = load_data(
        "hapi-client/stroke-rehabilitation-draft.bundle.json",
        contract=f"hapi-tx-{uuid.uuid4().hex[:12]}",
        patient=unique_personnummer(),
    )
    return bundle


def _goal(contract: dict[str, Any], key: str, description: str) -> dict[str, Any]:
    goal: dict[str, Any] = load_data(
        "hapi-client/goal.json",
        system=urls.ID_GOAL,
        contract=contract["id"],
        key=key,
        description=description,
    )
    return goal


def _bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
def client_run(
    hapi_clients_jar: Path,
    base_url: str,
    issuer: TestIssuer,
    contract: dict[str, Any],
    agreed: dict[str, Any],
    free_times: dict[str, Any],
    transaction: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """One run of the generic client: each step's answer, by the step's name. The agreed
    contract is there for the coherent plan to find."""
    personnummer = contract["patient"]["identifier"]["value"]
    given = {
        "base": f"{base_url}/fhir",
        "tokens": {
            "ehr": _bearer(_ehr(issuer, contract)),
            "auditor": _bearer(issuer.headers("auditor")),
            "booking": _bearer(issuer.headers("booking")),
        },
        "systems": {"contract": urls.ID_CONTRACT, "goal": urls.ID_GOAL},
        "contract": contract["id"],
        "goalKey": contract["goals"][0]["key"],
        "descriptions": DESCRIPTIONS,
        "goal": _goal(contract, "hapi", NEW_GOAL),
        "conditionalGoal": _goal(contract, "hapi-conditional", CONDITIONAL_GOAL),
        "transaction": transaction,
        "patient": f"{system_for(IdentifierKind.PERSONNUMMER)}|{personnummer}",
        "find": free_times["asked"],
    }
    workdir = tmp_path_factory.mktemp("hapi-client-run")
    answer: dict[str, Any] = hapi_clients.run(
        hapi_clients_jar, "client", given, workdir, CLIENT_TIMEOUT
    )
    return answer


def _step(run: dict[str, Any], name: str) -> dict[str, Any]:
    """A step's answer, failing with the endpoint's refusal and the exchanges if it was one."""
    step: dict[str, Any] = run[name]
    assert "error" not in step, f"{name}: {json.dumps(step, indent=1, ensure_ascii=False)}"
    return step


def _sent(step: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """The requests of ``method`` a step made, with their answers' status."""
    return [e for e in step["exchanges"] if e["method"] == method]


def _goals(base_url: str, issuer: TestIssuer, contract: dict[str, Any]) -> dict[str, str]:
    """The contract's goals as the JSON facade reads them: description by key."""
    read = httpx.get(f"{base_url}/contracts/{contract['id']}", headers=_ehr(issuer, contract))
    assert read.status_code == 200, read.text
    return {g["key"]: g["description"] for g in read.json()["goals"]}


def test_hapi_reads_vreads_and_lists_the_history(
    client_run: dict[str, Any], contract: dict[str, Any]
) -> None:
    search, read = _step(client_run, "search"), _step(client_run, "read")
    vread, history = _step(client_run, "vread"), _step(client_run, "history")

    [match] = search["matches"]
    assert match["contract"] == contract["id"]
    assert (read["id"], read["title"]) == (match["id"], contract["title"])
    assert read["version"] is not None, "the read's id carries its version"
    assert (vread["id"], vread["version"], vread["title"]) == (
        read["id"],
        read["version"],
        read["title"],
    )
    # Every version, newest first, down to the first.
    assert history["versions"] == [str(v) for v in range(int(read["version"]), 0, -1)]


def test_hapi_searches_with_an_include_and_pages_to_the_end(
    client_run: dict[str, Any], contract: dict[str, Any], agreed: dict[str, Any], base_url: str
) -> None:
    search, paging = _step(client_run, "search"), _step(client_run, "paging")

    # A unit's search of its CarePlans keeps its total.
    assert search["total"] == 1
    assert len(search["included"]) == len(contract["goals"])
    assert all(i.startswith("Goal/") for i in search["included"])
    # One Goal a page, the patient's two contracts' goals, every next link followed to the end.
    goals = len(contract["goals"]) + len(agreed["goals"])
    assert paging["ended"] is True
    assert paging["pages"] == goals
    assert len(set(paging["ids"])) == len(paging["ids"]) == goals
    assert set(search["included"]) <= set(paging["ids"])
    assert len(paging["next"]) == goals - 1
    assert all(link.startswith(f"{base_url}/fhir/Goal/_page?") for link in paging["next"])


def test_hapi_cuts_with_elements_and_summary_and_reads_the_subsetted_tag(
    client_run: dict[str, Any], contract: dict[str, Any]
) -> None:
    elements = _step(client_run, "elements")
    summary = _step(client_run, "summary")
    read = _step(client_run, "readElements")

    for cut in (elements, summary, read):
        assert SUBSETTED in cut["tags"]
        assert cut["title"] == contract["title"]
        assert cut["activities"] == 0
        assert cut["text"] is False
    # _elements keeps what a CarePlan must have beside what was asked.
    assert elements["status"] == read["status"] == "draft"
    # Whole, the CarePlan holds an activity for each activity and each agreed time.
    whole = len(contract["activities"]) + len(contract["agreed_times"])
    assert _step(client_run, "read")["activities"] == whole


def test_hapi_updates_without_a_version_and_with_one(
    client_run: dict[str, Any], base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    update = _step(client_run, "update")
    versioned = _step(client_run, "updateVersioned")
    stale = client_run["updateStale"]

    [plain] = _sent(update, "PUT")
    assert "If-Match" not in plain
    assert urlsplit(plain["url"]).path.endswith(f"/fhir/Goal/{update['idPart']}")
    assert plain["status"] == 200
    assert update["id"] is not None, "MethodOutcome.getId() after the update"
    assert update["version"] == str(int(update["before"]) + 1)
    assert update["description"] == DESCRIPTIONS[0]

    [matched] = _sent(versioned, "PUT")
    asked = versioned["asked"].rsplit("/", 1)[-1]
    assert matched["If-Match"].removeprefix("W/").strip('"') == asked
    assert matched["status"] == 200
    assert versioned["version"] == str(int(asked) + 1)
    assert versioned["description"] == DESCRIPTIONS[1]
    # A version no longer current is refused: If-Match was sent and honoured.
    assert stale.get("status") == 412, json.dumps(stale, indent=1)
    [refused] = _sent(stale, "PUT")
    assert "If-Match" in refused

    assert _goals(base_url, issuer, contract)[contract["goals"][0]["key"]] == DESCRIPTIONS[1]


def test_hapi_creates_a_goal_and_creates_one_conditionally(
    client_run: dict[str, Any], base_url: str, issuer: TestIssuer, contract: dict[str, Any]
) -> None:
    create = _step(client_run, "create")
    conditional = _step(client_run, "conditionalCreate")
    first, second = conditional["first"], conditional["second"]

    [posted] = _sent(create, "POST")
    assert create["created"] is True
    assert create["id"].startswith(f"{base_url}/fhir/Goal/{create['idPart']}/_history/")
    assert posted["Location"] == create["id"]
    assert create["version"] == "1"
    assert create["description"] == NEW_GOAL
    assert [e["status"] for e in _sent(conditional, "POST")] == [201, 200]
    # HAPI sends the condition as a whole search URL ([base]/Goal?identifier=...), encoded.
    conditions = [
        dict(parse_qsl(e["If-None-Exist"].split("?", 1)[-1]))["identifier"]
        for e in _sent(conditional, "POST")
    ]
    assert conditions == [f"{urls.ID_GOAL}|{contract['id']}/hapi-conditional"] * 2
    assert first["created"] is True
    assert first["version"] is not None
    # The second finds the first's Goal and creates nothing.
    assert second["idPart"] == first["idPart"]
    assert second["created"] is not True
    goals = _goals(base_url, issuer, contract)
    assert goals["hapi"] == NEW_GOAL
    assert goals["hapi-conditional"] == CONDITIONAL_GOAL


def test_hapi_sends_a_contract_as_a_transaction_and_reads_the_r4_answer(
    client_run: dict[str, Any], transaction: dict[str, Any], base_url: str
) -> None:
    answer = _step(client_run, "transaction")
    [posted] = _sent(answer, "POST")
    sent = transaction["entry"]
    careplan = next(e["resource"] for e in sent if e["resource"]["resourceType"] == "CarePlan")

    # R4: the transaction is answered 200; each entry says its own outcome, in the order sent.
    assert posted["status"] == 200
    assert answer["type"] == "transaction-response"
    assert [e["sent"] for e in answer["entries"]] == [e["resource"]["resourceType"] for e in sent]
    for entry in answer["entries"]:
        assert entry["status"] in ("201 Created", "200 OK"), entry
        located = re.fullmatch(
            rf"(?:{re.escape(base_url)}/fhir/)?{entry['sent']}/[A-Za-z0-9\-.]{{1,64}}"
            r"/_history/(\d+)",
            entry["location"] or "",
        )
        assert located, entry
        assert entry["etag"] == f'W/"{located.group(1)}"', entry
    contract_records = [e for e in answer["entries"] if e["sent"] in CONTRACT_TYPES]
    assert {e["status"] for e in contract_records} == {"201 Created"}
    assert answer["carePlan"]["title"] == careplan["title"]


def test_hapi_calls_the_coherent_plan_by_get_and_by_post(
    client_run: dict[str, Any], agreed: dict[str, Any]
) -> None:
    by_get = _step(client_run, "coherentPlanGet")
    by_post = _step(client_run, "coherentPlanPost")

    [asked] = _sent(by_get, "GET")
    [posted] = _sent(by_post, "POST")
    assert urlsplit(asked["url"]).path.endswith("/fhir/CarePlan/$coherent-plan")
    assert "patient" in dict(parse_qsl(urlsplit(asked["url"]).query))
    assert urlsplit(posted["url"]).path.endswith("/fhir/CarePlan/$coherent-plan")
    for plan in (by_get, by_post):
        # The agreed contract, not the draft, which is not in force.
        assert [(m["contract"], m["title"]) for m in plan["matches"]] == [
            (agreed["id"], agreed["title"])
        ]
        included = {i.split("/")[0] for i in plan["included"]}
        assert {"Goal", "CareTeam", "Appointment"} <= included


def test_hapi_finds_free_times_by_get_and_by_post(
    client_run: dict[str, Any], free_times: dict[str, Any]
) -> None:
    by_get = _step(client_run, "findGet")
    by_post = _step(client_run, "findPost")

    [asked] = _sent(by_get, "GET")
    [posted] = _sent(by_post, "POST")
    assert urlsplit(asked["url"]).path.endswith("/fhir/Appointment/$find")
    assert urlsplit(posted["url"]).path.endswith("/fhir/Appointment/$find")
    for found in (by_get, by_post):
        assert [a["status"] for a in found["appointments"]] == ["proposed", "proposed"]
        slots = [s for a in found["appointments"] for s in a["slots"]]
        assert [s.rsplit("/", 1)[-1] for s in slots] == free_times["slots"]


def test_hapi_counts_a_contracts_changes_as_an_auditor(
    client_run: dict[str, Any], conformance_loaded: str, contract: dict[str, Any]
) -> None:
    count, total = _step(client_run, "count"), _step(client_run, "total")
    by_unit = client_run["countByUnit"]
    token = f"{urls.ID_CONTRACT}|{contract['id']}"
    stored = httpx.get(
        f"{conformance_loaded}/Provenance",
        params={"target-identifier": token, "_summary": "count"},
    ).json()["total"]

    # The facade's create and the client's writes each left one.
    assert stored > 1
    assert (count["total"], count["entries"]) == (stored, 0)
    assert (total["total"], total["entries"]) == (stored, stored)
    # A unit counts its own CarePlans: HAPI is asked for the unit's only, and it sees them all.
    assert (by_unit.get("total"), by_unit.get("entries")) == (1, 0), json.dumps(by_unit, indent=1)


def _answers(
    base_url: str, issuer: TestIssuer, contracts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Everything the endpoint returns for ``contracts`` (one unit's, one patient's), each
    answer as it came: searches with every include the CapabilityStatement declares, reads of
    every record found, the CarePlans' histories, the coherent plan, and the audit trail."""
    ehr = _ehr(issuer, contracts[0])
    auditor = issuer.headers("auditor")
    answers: list[dict[str, Any]] = []

    def answer(name: str, path: str, headers: dict[str, str], params: Any = ()) -> Any:
        got = httpx.get(f"{base_url}/fhir/{path}", params=params, headers=headers, timeout=60)
        assert got.status_code == 200, f"{name}: {got.text}"
        answers.append({"name": name, "resource": got.json()})
        return got.json()

    statement = httpx.get(f"{base_url}/fhir/metadata").json()
    includes = {
        r["type"]: [("_include", i) for i in r.get("searchInclude", []) if i != "*"]
        for r in statement["rest"][0]["resource"]
    }
    tokens = ",".join(f"{urls.ID_CONTRACT}|{c['id']}" for c in contracts)
    plans = answer(
        "CarePlan search", "CarePlan", ehr, [("identifier", tokens), *includes["CarePlan"]]
    )
    found = [e["resource"] for e in plans["entry"]]
    subject = found[0]["subject"]["reference"]
    for kind in CONTRACT_TYPES[1:]:
        searched = answer(f"{kind} search", kind, ehr, [("patient", subject), *includes[kind]])
        found += [e["resource"] for e in searched["entry"]]
    records = {(r["resourceType"], r["id"]) for r in found if r["resourceType"] in CONTRACT_TYPES}
    for kind, rid in sorted(records):
        answer(f"read {kind}/{rid}", f"{kind}/{rid}", ehr)
    for kind, rid in sorted(records):
        if kind == "CarePlan":
            answer(f"history CarePlan/{rid}", f"CarePlan/{rid}/_history", ehr)
    personnummer = contracts[0]["patient"]["identifier"]["value"]
    patient = f"{system_for(IdentifierKind.PERSONNUMMER)}|{personnummer}"
    answer("coherent plan", "CarePlan/$coherent-plan", ehr, {"patient": patient})
    for contract in contracts:
        token = f"{urls.ID_CONTRACT}|{contract['id']}"
        changes = {"target-identifier": token}
        answer(f"Provenance of {contract['id']}", "Provenance", auditor, changes)
        # The audit trail reaches the FHIR store from a background writer.
        deadline = time.monotonic() + AUDIT_WRITTEN_WITHIN
        while True:
            got = httpx.get(
                f"{base_url}/fhir/AuditEvent",
                params={"entity-identifier": token},
                headers=auditor,
                timeout=60,
            )
            assert got.status_code == 200, got.text
            if got.json().get("entry") or time.monotonic() > deadline:
                break
            time.sleep(1)
        answers.append({"name": f"AuditEvent of {contract['id']}", "resource": got.json()})
    return answers


def _types(answers: list[dict[str, Any]]) -> set[str]:
    return {
        str(r["resourceType"])
        for a in answers
        for r in [a["resource"], *(e["resource"] for e in a["resource"].get("entry", []))]
    }


def test_hapis_validator_finds_no_error_in_what_the_endpoint_returns(
    hapi_clients_jar: Path,
    base_url: str,
    issuer: TestIssuer,
    contract: dict[str, Any],
    agreed: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    answers = _answers(base_url, issuer, [contract, agreed])
    given = {"base": f"{base_url}/fhir", "answers": answers}
    workdir = tmp_path_factory.mktemp("hapi-validator-run")

    validated = hapi_clients.run(hapi_clients_jar, "validate", given, workdir, VALIDATOR_TIMEOUT)

    assert {*CONTRACT_TYPES, "Provenance", "AuditEvent", "Patient"} <= _types(answers)
    # Every profile and extension of ours the validator met resolved on our base.
    definitions = [
        f
        for f in validated["fetched"]
        if f["type"] == "StructureDefinition" and f["url"].startswith(OURS)
    ]
    assert [f["url"] for f in definitions if not f["found"]] == []
    assert urls.PROFILE_CAREPLAN in {f["url"] for f in definitions}
    # Warnings and information (narrative advised, codes of other systems) are allowed.
    errors: dict[str, list[str]] = {}
    for result in validated["results"]:
        for issue in result["issues"]:
            if issue["severity"] in ("error", "fatal"):
                errors.setdefault(result["answer"], []).append(
                    f"{issue['resource']} {issue['location']}: {issue['message']}"
                )
    assert errors == {}, json.dumps(errors, indent=1, ensure_ascii=False)
