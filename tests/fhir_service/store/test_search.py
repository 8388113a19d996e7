"""Searching the contract store against the real HAPI: each filter, combined, paged, refused.

HAPI is shared by the whole test session, so each test searches by patients, units and
professionals of its own; the two filters that cannot be made unique (status, period) are also
checked alone, over everything HAPI holds, by what every result must satisfy.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_service.contract import (
    Activity,
    Agreement,
    AgreementParty,
    CareContact,
    Contract,
    ContractStatus,
    Goal,
    Identifier,
    IdentifierKind,
    Name,
    Organization,
    Patient,
    Period,
    Professional,
)
from fhir_service.contract.identifiers import is_valid
from fhir_service.contract.model import MAX_GOALS
from fhir_service.fhir import HapiClient
from fhir_service.mapping.from_fhir import (
    READ_PARAMS,
    UnreadableContractError,
    contract_from_bundle,
)
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.metrics import Metrics
from fhir_service.store import (
    MAX_SEARCH_COUNT,
    ContractPage,
    ContractStore,
    InvalidSearchError,
)

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
BASE = Contract.model_validate_json((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
HSA, ORGNR, HPR = (
    IdentifierKind.HSA_ID,
    IdentifierKind.ORGANISASJONSNUMMER,
    IdentifierKind.HPR_NUMMER,
)


# Identifiers no other test uses.


def _with_check_digit(kind: IdentifierKind, body: str) -> str | None:
    return next((body + d for d in "0123456789" if is_valid(kind, body + d)), None)


def _personnummer() -> Identifier:
    born = date(1930, 1, 1) + timedelta(days=random.randrange(80 * 365))
    value = _with_check_digit(
        IdentifierKind.PERSONNUMMER, f"{born:%Y%m%d}{random.randrange(1000):03d}"
    )
    assert value is not None
    return Identifier(kind=IdentifierKind.PERSONNUMMER, value=value)


def _hsa(prefix: str) -> Identifier:
    return Identifier(kind=HSA, value=f"SE2321000065-{prefix}{uuid.uuid4().hex[:12].upper()}")


def _organisasjonsnummer() -> Identifier:
    while True:
        value = _with_check_digit(ORGNR, f"{random.randrange(10**7, 10**8)}")
        if value is not None:
            return Identifier(kind=ORGNR, value=value)


def _unit(identifier: Identifier | None = None) -> Organization:
    identifier = identifier or _hsa("U")
    return Organization(identifier=identifier, name=f"Enhet {identifier.value}", kind="care-unit")


def _professional(identifier: Identifier, unit: Organization) -> Professional:
    return Professional(
        identifier=identifier,
        name=Name(family="Kontakt", given=("Kim",)),
        role="nurse",
        organization=unit,
    )


# Contracts: the elderly-psychiatry example, moved to the given patient, unit and people.


def _contract(
    patient: Identifier,
    *,
    unit: Organization | None = None,
    contact: CareContact | None = None,
    member: Professional | None = None,
    activity_unit: Organization | None = None,
    period: Period | None = BASE.period,
    goals: tuple[Goal, ...] | None = None,
) -> Contract:
    data: dict[str, Any] = {
        **BASE.model_dump(),
        "id": f"search-{uuid.uuid4().hex}",
        "patient": Patient(identifier=patient, name=BASE.patient.name),
        "period": period,
    }
    if unit is not None:
        data["responsible_clinician"] = BASE.responsible_clinician.model_copy(
            update={"organization": unit}
        )
    if contact is not None:
        data["care_contacts"] = (contact,)
    if member is not None:
        data["professionals"] = (*BASE.professionals, member)
    if activity_unit is not None:
        data["activities"] = (
            *BASE.activities,
            Activity(
                key="at-unit",
                owner="care-unit",
                category="other",
                description="Besök på enheten",
                organization=activity_unit,
            ),
        )
    if goals is not None:
        data["goals"] = goals
    return Contract.model_validate(data)


def _fast_vardkontakt(professional: Professional) -> CareContact:
    return CareContact(kind="fast-vardkontakt", professional=professional)


def _agreements() -> tuple[Agreement, ...]:
    now = datetime.now(UTC).replace(microsecond=0)
    return tuple(Agreement(party=party, agreed_at=now) for party in AgreementParty)


def _ids(found: ContractPage | list[Contract]) -> list[str]:
    contracts = found.contracts if isinstance(found, ContractPage) else found
    return [c.id for c in contracts]


async def _everything(store: ContractStore, **criteria: Any) -> list[Contract]:
    found: list[Contract] = []
    cursor = None
    for _ in range(200):
        page = await store.search(**criteria, count=MAX_SEARCH_COUNT, cursor=cursor)
        found += page.contracts
        if not page.has_more:
            return found
        cursor = page.next_cursor
    raise AssertionError("more than 200 pages")


def _hapi_requests(metrics: Metrics) -> float:
    labels = {"method": "GET", "outcome": "200"}
    return metrics.registry.get_sample_value("fhir_service_hapi_requests_total", labels) or 0.0


@pytest.fixture
def store(hapi: HapiClient) -> ContractStore:
    return ContractStore(hapi)


# Each filter.


async def test_patient_filter_gives_that_patients_whole_contracts_in_creation_order(
    store: ContractStore,
) -> None:
    patient, other = _personnummer(), _personnummer()
    first = await store.create(_contract(patient))
    await store.create(_contract(other))
    second = await store.agree((await store.create(_contract(patient))).id, 1, _agreements())

    by_identifier = await store.search(patient=patient)
    by_kind_and_value = await store.search(
        patient=("personnummer", f"{patient.value[:8]}-{patient.value[8:]}")
    )

    assert by_identifier.contracts == (first, second)
    assert by_identifier.contracts == (await store.read(first.id), await store.read(second.id))
    assert second.agreements  # read from the page's Provenances
    assert not by_identifier.has_more
    assert by_kind_and_value == by_identifier


async def test_careplans_that_are_not_contracts_are_left_out(
    store: ContractStore, hapi: HapiClient
) -> None:
    patient = _personnummer()
    contract = await store.create(_contract(patient))
    identifier = f"{system_for(patient.kind)}|{patient.value}"
    (stored_patient,) = (await hapi.search("Patient", {"identifier": identifier})).matches()
    # Another system's plan for the same patient, in the same HAPI.
    await hapi.create(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{stored_patient['id']}"},
        }
    )

    found = await store.search(patient=patient)

    assert found.contracts == (contract,)


async def test_a_page_of_contracts_is_one_hapi_request(
    store: ContractStore, metrics: Metrics
) -> None:
    patient = _personnummer()
    for _ in range(5):
        await store.create(_contract(patient))
    before = _hapi_requests(metrics)

    page = await store.search(patient=patient)

    assert len(page.contracts) == 5
    assert _hapi_requests(metrics) - before == 1


async def test_status_follows_the_lifecycle(store: ContractStore) -> None:
    patient = _personnummer()
    draft = await store.create(_contract(patient))

    found_draft = await store.search(patient=patient, status=ContractStatus.DRAFT)
    agreed = await store.agree(draft.id, 1, _agreements())
    after_agreeing = {s: await store.search(patient=patient, status=s) for s in ("draft", "agreed")}
    revised = await store.step(draft.id, ContractStatus.REVISED, 2)
    after_revising = {
        s: await store.search(patient=patient, status=s) for s in ("agreed", "revised")
    }

    assert found_draft.contracts == (draft,)
    assert after_agreeing["draft"].contracts == ()
    assert after_agreeing["agreed"].contracts == (agreed,)
    assert after_revising["agreed"].contracts == ()
    assert after_revising["revised"].contracts == (revised,)


async def test_several_statuses_match_any_of_them(store: ContractStore) -> None:
    patient = _personnummer()
    draft = await store.create(_contract(patient))
    agreed = await store.agree((await store.create(_contract(patient))).id, 1, _agreements())
    revoked = await store.step(
        (await store.create(_contract(patient))).id, ContractStatus.REVOKED, 1
    )

    found = await store.search(patient=patient, status=["draft", ContractStatus.AGREED])

    assert revoked.status is ContractStatus.REVOKED
    assert found.contracts == (draft, agreed)


async def test_status_alone_gives_only_contracts_in_that_status(store: ContractStore) -> None:
    patient = _personnummer()
    agreed = await store.agree((await store.create(_contract(patient))).id, 1, _agreements())
    completed = await store.step(
        (await store.agree((await store.create(_contract(patient))).id, 1, _agreements())).id,
        ContractStatus.COMPLETED,
        2,
    )

    found = await _everything(store, status=ContractStatus.COMPLETED)

    assert completed in found
    assert agreed.id not in _ids(found)
    assert {c.status for c in found} == {ContractStatus.COMPLETED}
    assert len(set(_ids(found))) == len(found)


async def test_care_unit_is_the_responsible_clinicians_unit(store: ContractStore) -> None:
    unit = _unit()
    own = await store.create(_contract(_personnummer(), unit=unit))
    await store.create(_contract(_personnummer(), activity_unit=unit))
    await store.create(
        _contract(_personnummer(), contact=_fast_vardkontakt(_professional(_hsa("P"), unit)))
    )

    found = await store.search(care_unit=unit.identifier)

    assert found.contracts == (own,)


async def test_care_unit_by_norwegian_organisation_number(store: ContractStore) -> None:
    unit = _unit(_organisasjonsnummer())
    own = await store.create(_contract(_personnummer(), unit=unit))

    found = await store.search(care_unit=("organisasjonsnummer", unit.identifier.value))

    assert found.contracts == (own,)


async def test_care_contact_is_the_fixed_contact_not_any_team_member(
    store: ContractStore,
) -> None:
    nurse = _professional(_hsa("P"), _unit())
    coordinator = _professional(
        Identifier(kind=HPR, value=f"{random.randrange(10**8, 10**9)}"), nurse.organization
    )
    with_contact = await store.create(_contract(_personnummer(), contact=_fast_vardkontakt(nurse)))
    await store.create(_contract(_personnummer(), member=nurse))
    with_coordinator = await store.create(
        _contract(
            _personnummer(),
            contact=CareContact(kind="personlig-koordinator", professional=coordinator),
        )
    )

    by_nurse = await store.search(care_contact=nurse.identifier)
    by_coordinator = await store.search(care_contact=("hpr-nummer", coordinator.identifier.value))

    assert by_nurse.contracts == (with_contact,)
    assert by_coordinator.contracts == (with_coordinator,)


# Periods: FHIR date search on CarePlan.period, both days included, open sides open.

MARCH_10, MARCH_20 = date(2026, 3, 10), date(2026, 3, 20)
PERIODS: dict[str, Period | None] = {
    "closed": Period(start=MARCH_10, end=MARCH_20),
    "open-end": Period(start=MARCH_10),
    "open-start": Period(end=MARCH_20),
    "none": None,
}
ALL_THREE = ["closed", "open-end", "open-start"]


@pytest.fixture(scope="module")
async def period_contracts(
    conformance_loaded: str,
) -> AsyncIterator[tuple[Identifier, dict[str, str]]]:
    patient = _personnummer()
    hapi = HapiClient(conformance_loaded, Metrics(), timeout=60)
    store = ContractStore(hapi)
    ids = {
        name: (await store.create(_contract(patient, period=p))).id for name, p in PERIODS.items()
    }
    yield patient, ids
    await hapi.aclose()


@pytest.mark.parametrize(
    ("period_from", "period_to", "expected"),
    [
        pytest.param(MARCH_20, None, ALL_THREE, id="ending-on-the-first-day-counts"),
        pytest.param(date(2026, 3, 21), None, ["open-end"], id="after-the-end"),
        pytest.param(None, MARCH_10, ALL_THREE, id="starting-on-the-last-day-counts"),
        pytest.param(None, date(2026, 3, 9), ["open-start"], id="before-the-start"),
        pytest.param(date(2026, 3, 12), date(2026, 3, 12), ALL_THREE, id="one-day-inside"),
        pytest.param(date(2026, 3, 21), date(2026, 3, 25), ["open-end"], id="range-after"),
        pytest.param(date(2026, 1, 1), date(2026, 3, 9), ["open-start"], id="range-before"),
        pytest.param(date(2020, 1, 1), date(2030, 12, 31), ALL_THREE, id="range-around"),
        pytest.param(None, None, [*PERIODS], id="no-period-criterion"),
    ],
)
async def test_period_overlap(
    store: ContractStore,
    period_contracts: tuple[Identifier, dict[str, str]],
    period_from: date | None,
    period_to: date | None,
    expected: list[str],
) -> None:
    patient, ids = period_contracts

    found = await store.search(patient=patient, period_from=period_from, period_to=period_to)

    assert _ids(found) == [ids[name] for name in PERIODS if name in expected]


async def test_period_alone_gives_only_overlapping_contracts(store: ContractStore) -> None:
    # A window in a far year of its own: only this test's contracts and open-ended ones reach it.
    year = random.randrange(2200, 2900)
    start, end = date(year, 6, 15), date(year, 6, 20)
    inside = await store.create(
        _contract(_personnummer(), period=Period(start=date(year, 6, 1), end=date(year, 6, 30)))
    )
    outside = await store.create(
        _contract(_personnummer(), period=Period(start=date(year, 6, 21), end=date(year, 7, 31)))
    )

    found = await _everything(store, period_from=start, period_to=end)

    assert inside in found
    assert outside.id not in _ids(found)
    for contract in found:
        assert contract.period is not None
        assert contract.period.start is None or contract.period.start <= end
        assert contract.period.end is None or contract.period.end >= start


# Filters together.


async def test_filters_combine_and_each_one_narrows(store: ContractStore) -> None:
    patient, unit, other_unit = _personnummer(), _unit(), _unit()
    contact = _fast_vardkontakt(_professional(_hsa("P"), unit))
    in_2026, in_2028 = (Period(start=date(y, 1, 1), end=date(y, 12, 31)) for y in (2026, 2028))
    matching = await store.create(_contract(patient, unit=unit, contact=contact, period=in_2026))
    agreed = await store.agree(
        (await store.create(_contract(patient, unit=unit, contact=contact, period=in_2026))).id,
        1,
        _agreements(),
    )
    elsewhere = await store.create(
        _contract(patient, unit=other_unit, contact=contact, period=in_2026)
    )
    no_contact = await store.create(_contract(patient, unit=unit, period=in_2026))
    later = await store.create(_contract(patient, unit=unit, contact=contact, period=in_2028))
    someone_else = await store.create(
        _contract(_personnummer(), unit=unit, contact=contact, period=in_2026)
    )
    criteria: dict[str, Any] = {
        "patient": patient,
        "status": "draft",
        "care_unit": unit.identifier,
        "care_contact": contact.professional.identifier,
        "period_from": date(2026, 6, 1),
        "period_to": date(2026, 6, 30),
    }
    without = {
        name: await store.search(**{k: v for k, v in criteria.items() if k != name})
        for name in ("patient", "status", "care_unit", "care_contact", "period_to")
    }

    assert _ids(await store.search(**criteria)) == [matching.id]
    assert _ids(without["patient"]) == [matching.id, someone_else.id]
    assert _ids(without["status"]) == [matching.id, agreed.id]
    assert _ids(without["care_unit"]) == [matching.id, elsewhere.id]
    assert _ids(without["care_contact"]) == [matching.id, no_contact.id]
    assert _ids(without["period_to"]) == [matching.id, later.id]


# Paging.


@pytest.fixture(scope="module")
async def seven_contracts(conformance_loaded: str) -> AsyncIterator[tuple[Identifier, list[str]]]:
    patient = _personnummer()
    hapi = HapiClient(conformance_loaded, Metrics(), timeout=60)
    store = ContractStore(hapi)
    ids = [(await store.create(_contract(patient))).id for _ in range(7)]
    yield patient, ids
    await hapi.aclose()


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(1, [1] * 7), (3, [3, 3, 1]), (6, [6, 1]), (7, [7]), (MAX_SEARCH_COUNT, [7])],
)
async def test_pages_give_every_contract_once(
    store: ContractStore,
    seven_contracts: tuple[Identifier, list[str]],
    count: int,
    sizes: list[int],
) -> None:
    patient, ids = seven_contracts
    pages = [await store.search(patient=patient, count=count)]
    while pages[-1].has_more:
        pages.append(await store.search(patient=patient, count=count, cursor=pages[-1].next_cursor))

    assert [len(p.contracts) for p in pages] == sizes
    assert [p.has_more for p in pages] == [True] * (len(sizes) - 1) + [False]
    assert [i for p in pages for i in _ids(p)] == ids


async def test_contracts_created_while_paging_come_at_the_end(store: ContractStore) -> None:
    patient = _personnummer()
    before = [(await store.create(_contract(patient))).id for _ in range(4)]

    first = await store.search(patient=patient, count=2)
    meanwhile = await store.create(_contract(patient))
    rest = await store.search(patient=patient, count=2, cursor=first.next_cursor)
    last = await store.search(patient=patient, count=2, cursor=rest.next_cursor)

    assert _ids(first) + _ids(rest) + _ids(last) == [*before, meanwhile.id]
    assert not last.has_more


async def test_a_page_over_hapis_include_cap_still_gives_whole_contracts(
    store: ContractStore, hapi: HapiClient
) -> None:
    patient = _personnummer()
    # As many goals as a contract may hold, in enough contracts to pass the cap together.
    goals = tuple(Goal(key=f"goal-{n}", description=f"Mål {n}") for n in range(MAX_GOALS))
    created = [await store.create(_contract(patient, goals=goals)) for _ in range(11)]
    by_patient = ("patient.identifier", f"{system_for(patient.kind)}|{patient.value}")

    plain = await hapi.search("CarePlan", [by_patient, *READ_PARAMS], max_pages=1)
    found = await store.search(patient=patient)

    # Over 1000 includes HAPI stops loading them, so the plain page cannot hold the contracts.
    with pytest.raises(UnreadableContractError):
        contract_from_bundle(plain.as_bundle(), created[0].id)
    assert found.contracts == tuple(created)


# Refused before HAPI is asked.


@pytest.fixture
async def unreachable() -> AsyncIterator[tuple[ContractStore, list[httpx.Request]]]:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    hapi = HapiClient("http://hapi.invalid/fhir", Metrics(), transport=httpx.MockTransport(answer))
    yield ContractStore(hapi), sent
    await hapi.aclose()


def _cursor(state: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        pytest.param(
            {"patient": ("personnummer", "191212121213")}, "check digit", id="check-digit"
        ),
        pytest.param(
            {"patient": ("passport", "123456")}, "unknown identifier kind 'passport'", id="kind"
        ),
        pytest.param(
            {"patient": Identifier(kind=HSA, value="SE2321000065-1003")},
            "hsa-id does not identify a patient",
            id="hsa-id-as-patient",
        ),
        pytest.param(
            {"care_unit": ("personnummer", "191212121212")},
            "personnummer does not identify a care unit",
            id="person-as-unit",
        ),
        pytest.param(
            {"care_contact": ("organisasjonsnummer", "983951201")},
            "organisasjonsnummer does not identify a professional",
            id="organisation-as-contact",
        ),
        pytest.param({"care_unit": ("hsa-id", "SE123")}, "invalid hsa-id", id="bad-hsa-id"),
        pytest.param({"status": "active"}, "unknown contract status 'active'", id="status"),
        pytest.param({"status": ["draft", "bogus"]}, "'bogus'", id="one-bad-status"),
        pytest.param({"status": []}, "at least one status", id="no-status"),
        pytest.param(
            {"period_from": date(2026, 3, 2), "period_to": date(2026, 3, 1)},
            "empty range",
            id="empty-period",
        ),
        pytest.param(
            {"period_from": datetime(2026, 3, 1, 12, 0, tzinfo=UTC)},
            "expected a date",
            id="time-of-day",
        ),
        pytest.param({"count": 0}, "count: 0", id="count-zero"),
        pytest.param({"count": MAX_SEARCH_COUNT + 1}, "count", id="count-too-large"),
        pytest.param({"cursor": "not a cursor"}, "not a cursor", id="garbage-cursor"),
        pytest.param(
            {"cursor": _cursor({"offset": -5, "search": "x"})}, "not a cursor", id="bad-offset"
        ),
        pytest.param(
            {"cursor": _cursor({"offset": 5, "search": "0" * 16})},
            "other criteria",
            id="forged-cursor",
        ),
    ],
)
async def test_bad_searches_are_refused_before_hapi_is_asked(
    unreachable: tuple[ContractStore, list[httpx.Request]],
    criteria: dict[str, Any],
    message: str,
) -> None:
    store, sent = unreachable

    with pytest.raises(InvalidSearchError, match=message) as caught:
        await store.search(**criteria)

    assert isinstance(caught.value, ValueError)
    assert sent == []


async def test_a_cursor_only_continues_its_own_search(store: ContractStore) -> None:
    patient = _personnummer()
    for _ in range(2):
        await store.create(_contract(patient))
    first = await store.search(patient=patient, count=1)

    with pytest.raises(InvalidSearchError, match="other criteria"):
        await store.search(patient=patient, status="draft", count=1, cursor=first.next_cursor)

    assert first.has_more
