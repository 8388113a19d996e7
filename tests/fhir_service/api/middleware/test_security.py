"""The security layer against the real HAPI: every route covered, tokens refused, walls kept."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import RouteContext, iter_route_contexts
from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.api.access_rules import RULES, Protected
from fhir_service.audit import Outcome
from fhir_service.audit import outbox as outbox_module
from fhir_service.mapping.tables import code_table
from fhir_service.security.dev_keys import generate_key, mint_token
from fhir_service.settings import Settings
from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[4] / "profiles" / "examples" / "contracts"
PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
UNIT = "hsa-id|SE2321000065-1254"
OTHER_UNIT = "hsa-id|SE2321000065-1003"


def _settings(hapi_url: str, tmp_path: Path, issuer: TestIssuer, **extra: Any) -> Settings:
    return Settings(
        hapi_url=hapi_url,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        data_dir=tmp_path,
        **issuer.settings(),
        **extra,
    )


@pytest.fixture
def service(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[TestClient]:
    app = create_app(_settings(conformance_loaded, tmp_path, issuer, max_body_bytes=64 * 1024))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200:
            assert time.monotonic() < deadline, client.get("/ready").text
            time.sleep(0.2)
        yield client


def _contract(personnummer: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"sec-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = personnummer or unique_personnummer()
    return data


def _agreed(personnummer: str) -> dict[str, Any]:
    """An agreed contract of OTHER_UNIT's."""
    data: dict[str, Any] = json.loads((EXAMPLES / "knee-replacement.json").read_text("utf-8"))
    data["id"] = f"sec-{uuid.uuid4().hex[:16]}"
    data["patient"]["identifier"]["value"] = personnummer
    return data


def _patient(contract: dict[str, Any]) -> str:
    return f"personnummer|{contract['patient']['identifier']['value']}"


def _routes() -> list[RouteContext]:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            hapi_url="http://hapi.invalid/fhir", auth_local_issuer=True, data_dir=Path(directory)
        )
        return list(iter_route_contexts(create_app(settings).routes))


def test_every_route_has_an_access_rule_and_every_rule_a_route() -> None:
    names = {route.name for route in _routes()}

    assert sorted(n for n in names if n not in RULES) == []
    assert sorted(n for n in RULES if n not in names) == []


def test_every_operation_a_rule_names_is_a_code_the_audit_trail_can_say() -> None:
    operations = code_table("contract-operation")
    named = {r.operation for r in RULES.values() if isinstance(r, Protected) and r.operation}
    assert sorted(o for o in named if o not in operations.names) == []


def test_a_route_without_a_rule_is_refused_even_with_a_good_token(
    service: TestClient, issuer: TestIssuer
) -> None:
    async def forgotten() -> dict[str, str]:
        return {"secret": "should never be seen"}

    service.app.add_api_route("/forgotten", forgotten)  # type: ignore[attr-defined]

    response = service.get("/forgotten", headers=issuer.headers("ehr", organization=UNIT))

    assert response.status_code == 403
    assert "should never be seen" not in response.text


def _protected_requests() -> list[tuple[str, str]]:
    found = []
    for route in _routes():
        if isinstance(RULES.get(route.name or ""), Protected):
            path = re.sub(r"\{[^}]+\}", "some-id", route.path or "")
            path = path.replace("some-id", str(uuid.uuid4())) if "webhooks" in path else path
            found += [(method, path) for method in sorted(route.methods or ())]
    return found


@pytest.mark.parametrize(("method", "path"), _protected_requests())
def test_every_protected_route_wants_a_bearer_token(
    service: TestClient, method: str, path: str
) -> None:
    response = service.request(method, path, json={})

    # The FHIR endpoint answers in FHIR, the rest of the API in problem documents.
    expected = FHIR_JSON if path.split("/")[1] == "fhir" else PROBLEM_JSON
    assert response.status_code == 401, response.text
    assert response.headers["Content-Type"] == expected
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="patient-contracts"')


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(issuer: TestIssuer, algorithm: str, key: bytes = b"") -> str:
    header = _b64(json.dumps({"alg": algorithm, "kid": issuer.key.kid, "typ": "JWT"}).encode())
    good = issuer.token("ehr", organization=UNIT)
    payload = good.split(".")[1]
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(key, signing_input, hashlib.sha256).digest() if key else b""
    return f"{header}.{payload}.{_b64(signature)}"


def _forged(issuer: TestIssuer) -> str:
    # Another key claiming the issuer's key id: the signature cannot match.
    impostor = generate_key("RS256")
    good = issuer.token("ehr", organization=UNIT)
    claims = json.loads(base64.urlsafe_b64decode(good.split(".")[1] + "=="))
    token = mint_token(impostor, claims)
    header = _b64(json.dumps({"alg": "RS256", "kid": issuer.key.kid, "typ": "JWT"}).encode())
    return ".".join([header, *token.split(".")[1:]])


BAD_TOKENS = {
    "expired": lambda i: i.token("ehr", organization=UNIT, exp=int(time.time()) - 600),
    "not yet valid": lambda i: i.token("ehr", organization=UNIT, nbf=int(time.time()) + 600),
    "wrong audience": lambda i: i.token("ehr", organization=UNIT, aud="another-service"),
    "wrong issuer": lambda i: i.token("ehr", organization=UNIT, iss="https://evil.example"),
    "no subject": lambda i: i.token("ehr", organization=UNIT, sub=None),
    "forged signature": _forged,
    "alg none": lambda i: _unsigned(i, "none"),
    "HS256 keyed with the public key": lambda i: _unsigned(i, "HS256", i.key.public_pem()),
    "not a JWT": lambda i: "not-a-token",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_refused_tokens_get_401_saying_why_and_see_nothing(
    service: TestClient, issuer: TestIssuer, kind: str
) -> None:
    stored = _contract()
    good = issuer.headers("ehr", organization=UNIT)
    assert service.post("/contracts", json=stored, headers=good).status_code == 201
    token = BAD_TOKENS[kind](issuer)

    response = service.get(
        f"/contracts/{stored['id']}", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert stored["patient"]["identifier"]["value"] not in response.text


def test_a_booking_platform_cannot_read_or_change_a_care_plan(
    service: TestClient, issuer: TestIssuer
) -> None:
    stored = _contract()
    ehr = issuer.headers("ehr", organization=UNIT)
    etag = service.post("/contracts", json=stored, headers=ehr).headers["ETag"]
    booking = issuer.headers("booking")

    attempts = [
        service.get(f"/contracts/{stored['id']}", headers=booking),
        service.get("/contracts", headers=booking),
        service.post("/contracts", json=_contract(), headers=booking),
        service.put(
            f"/contracts/{stored['id']}",
            json={**stored, "title": "Taken over"},
            headers={**booking, "If-Match": etag},
        ),
        service.post(f"/contracts/{stored['id']}/revoke", headers={**booking, "If-Match": etag}),
    ]

    assert [a.status_code for a in attempts] == [403] * 5
    assert all('error="insufficient_scope"' in a.headers["WWW-Authenticate"] for a in attempts)
    assert service.get(f"/contracts/{stored['id']}", headers=ehr).json()["title"] == stored["title"]


def test_a_patient_reads_and_searches_only_their_own_contracts(
    service: TestClient, issuer: TestIssuer
) -> None:
    # Agreed contracts: a patient is not shown drafts.
    ehr = issuer.headers("ehr", organization=OTHER_UNIT)
    mine = [_agreed(unique_personnummer())]
    mine.append(_agreed(mine[0]["patient"]["identifier"]["value"]))
    theirs = _agreed(unique_personnummer())
    for contract in [*mine, theirs]:
        assert service.post("/contracts", json=contract, headers=ehr).status_code == 201
    patient = issuer.headers("patient", patient=_patient(mine[0]))

    own = service.get(f"/contracts/{mine[0]['id']}", headers=patient)
    other = service.get(f"/contracts/{theirs['id']}", headers=patient)
    searched = service.get("/contracts?count=1", headers=patient)
    second_page = service.get(searched.json()["next"], headers=patient)
    asked_for_other = service.get(f"/contracts?patient={_patient(theirs)}", headers=patient)
    writes = service.post("/contracts", json=_contract(), headers=patient)

    assert own.status_code == 200
    assert other.status_code == 404
    assert theirs["patient"]["identifier"]["value"] not in other.text
    found = [c["id"] for c in searched.json()["contracts"] + second_page.json()["contracts"]]
    assert sorted(found) == sorted(c["id"] for c in mine)
    assert second_page.json()["next"] is None
    assert asked_for_other.status_code == 403
    assert writes.status_code == 403


@pytest.mark.parametrize(
    "criterion",
    [
        "_include=CarePlan:subject",
        "_revinclude=Provenance:target",
        "subject.identifier={other}",
        "patient:Patient.identifier={other}",
        "pateint={other}",
    ],
)
def test_includes_chains_and_unknown_criteria_are_refused_not_ignored(
    service: TestClient, issuer: TestIssuer, criterion: str
) -> None:
    ehr = issuer.headers("ehr", organization=UNIT)
    mine, theirs = _contract(), _contract()
    for contract in (mine, theirs):
        assert service.post("/contracts", json=contract, headers=ehr).status_code == 201
    patient = issuer.headers("patient", patient=_patient(mine))

    response = service.get(
        f"/contracts?{criterion.format(other=_patient(theirs))}", headers=patient
    )

    assert response.status_code == 422
    assert "unknown search parameters" in response.text
    assert "contracts" not in response.json()
    assert theirs["id"] not in response.text


def test_a_paging_cursor_does_not_open_another_compartment(
    service: TestClient, issuer: TestIssuer
) -> None:
    ehr = issuer.headers("ehr", organization=UNIT)
    for _ in range(2):
        assert service.post("/contracts", json=_contract(), headers=ehr).status_code == 201
    unit_wide = service.get("/contracts?count=1", headers=ehr).json()["next"]
    assert unit_wide is not None
    mine = _contract()
    service.post("/contracts", json=mine, headers=ehr)
    patient = issuer.headers("patient", patient=_patient(mine))

    replayed = service.get(unit_wide, headers=patient)

    assert replayed.status_code == 422
    assert "cursor" in replayed.text


def test_another_care_unit_can_neither_see_nor_change_a_units_contract(
    service: TestClient, issuer: TestIssuer
) -> None:
    ehr = issuer.headers("ehr", organization=UNIT)
    stranger = issuer.headers("ehr", organization=OTHER_UNIT)
    stored = _contract()
    etag = service.post("/contracts", json=stored, headers=ehr).headers["ETag"]

    read = service.get(f"/contracts/{stored['id']}", headers=stranger)
    searched = service.get(f"/contracts?patient={_patient(stored)}", headers=stranger)
    by_unit = service.get(f"/contracts?careUnit={UNIT}", headers=stranger)
    changed = service.put(
        f"/contracts/{stored['id']}",
        json={**stored, "title": "Taken over"},
        headers={**stranger, "If-Match": etag},
    )
    created_for_other_unit = service.post("/contracts", json=_contract(), headers=stranger)

    assert read.status_code == 404
    assert searched.json()["contracts"] == []
    assert searched.json()["withheld"] is False
    assert by_unit.status_code == 403
    assert changed.status_code == 404
    assert created_for_other_unit.status_code == 403
    assert service.get(f"/contracts/{stored['id']}", headers=ehr).json()["title"] == stored["title"]


def test_a_contract_cannot_be_moved_to_another_unit_or_patient(
    service: TestClient, issuer: TestIssuer
) -> None:
    ehr = issuer.headers("ehr", organization=UNIT)
    stored = _contract()
    etag = service.post("/contracts", json=stored, headers=ehr).headers["ETag"]
    moved = json.loads(json.dumps(stored))
    moved["responsible_clinician"]["organization"]["identifier"]["value"] = OTHER_UNIT.split("|")[1]

    response = service.put(
        f"/contracts/{stored['id']}", json=moved, headers={**ehr, "If-Match": etag}
    )

    assert response.status_code == 403
    assert service.get(f"/contracts/{stored['id']}", headers=ehr).headers["ETag"] == etag


def test_a_body_over_the_limit_gets_413_and_writes_nothing(
    service: TestClient, issuer: TestIssuer
) -> None:
    contract = _contract()
    contract["wishes"] = ["x" * 1000] * 80

    response = service.post(
        "/contracts", json=contract, headers=issuer.headers("ehr", organization=UNIT)
    )

    assert response.status_code == 413
    assert response.headers["Content-Type"] == PROBLEM_JSON
    read = service.get(
        f"/contracts/{contract['id']}", headers=issuer.headers("ehr", organization=UNIT)
    )
    assert read.status_code == 404


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_the_answer_leaves_before_its_outcome_is_kept_and_the_outcome_is_kept_after(
    service: TestClient, issuer: TestIssuer, method: str
) -> None:
    contract = _contract()
    headers = issuer.headers("ehr", organization=UNIT)
    if method == "GET":
        assert service.post("/contracts", json=contract, headers=headers).status_code == 201
    body = json.dumps(contract).encode() if method == "POST" else b""
    path = "/contracts" if method == "POST" else f"/contracts/{contract['id']}"
    app = service.app
    app_service = app.state.service  # type: ignore[attr-defined]
    keep_access = app_service.keep_access
    portal = service.portal
    assert portal is not None

    async def exchange() -> tuple[list[str], list[Any]]:
        happened: list[str] = []
        kept: list[Any] = []

        async def watched_keep(record: Any, *, opened: bool) -> None:
            happened.append("outcome kept")
            await keep_access(record, opened=opened)
            kept.append(record)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                happened.append("answered")

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (k.lower().encode(), v.encode())
                for k, v in {**headers, "Content-Type": "application/json"}.items()
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        app_service.keep_access = watched_keep
        try:
            await app(scope, receive, send)  # type: ignore[arg-type]
        finally:
            del app_service.keep_access
        return happened, kept

    happened, kept = portal.call(exchange)

    # The outcome was kept only once the answer had left, with the status the caller got.
    assert happened == ["answered", "outcome kept"]
    [record] = kept
    assert record.outcome is Outcome.SUCCESS
    assert ("201" if method == "POST" else "200") in record.description


def _watched_write(service: TestClient, *, kept: bool) -> tuple[list[str], Any]:
    """Create a contract while the audit record takes 300 ms to open (and with ``kept`` False,
    then fails); what happened, in order, and the answer."""
    app_service = service.app.state.service  # type: ignore[attr-defined]
    happened: list[str] = []
    contract = _contract()
    transport = app_service.hapi._transport  # what goes on the wire to HAPI
    open_access, contracts, send = (
        app_service.open_access,
        app_service.contracts,
        transport.handle_async_request,
    )

    async def slow_open(record: Any) -> None:
        await asyncio.sleep(0.3)
        if not kept:
            happened.append("record failed")
            raise OSError("the service DB cannot be written")
        await open_access(record)
        happened.append("record kept")

    def watched_contracts(*args: Any) -> Any:
        happened.append("route runs")
        return contracts(*args)

    async def watched_send(request: httpx.Request) -> Any:
        # This contract's writes only: the service's own start-up (subscriptions, profiles)
        # may still be writing to a HAPI that has just started.
        if request.method != "GET" and contract["id"].encode() in request.content:
            happened.append(f"HAPI {request.method}")
        return await send(request)

    app_service.open_access = slow_open
    app_service.contracts = watched_contracts
    transport.handle_async_request = watched_send
    try:
        answer = service.post("/contracts", json=contract)
    finally:
        del app_service.open_access, app_service.contracts, transport.handle_async_request
    return happened, answer


def test_a_write_runs_while_its_record_is_opened_and_writes_only_once_it_is_kept(
    service: TestClient, issuer: TestIssuer
) -> None:
    service.headers.update(issuer.headers("ehr", organization=UNIT))

    happened, answer = _watched_write(service, kept=True)

    assert answer.status_code == 201, answer.text
    # The body was read and checked, and the route ran, while the record was being opened;
    # HAPI was written to only after.
    assert happened == ["route runs", "record kept", "HAPI POST"]


def test_a_write_s_record_is_being_kept_while_the_route_runs_before_it_first_waits(
    service: TestClient, issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.headers.update(issuer.headers("ehr", organization=UNIT))
    app_service = service.app.state.service  # type: ignore[attr-defined]
    contracts = app_service.contracts
    committing = threading.Event()
    real_keep = outbox_module.keep

    def watched_keep(engine: Any, keepings: Any) -> None:
        committing.set()
        real_keep(engine, keepings)

    seen: list[bool] = []

    def watched_contracts(*args: Any) -> Any:
        # Blocks the event loop, as parsing and mapping a large contract does: the record's
        # commit can only be under way if it was handed to its thread before the route ran.
        seen.append(committing.wait(timeout=5))
        return contracts(*args)

    monkeypatch.setattr(outbox_module, "keep", watched_keep)
    app_service.contracts = watched_contracts
    try:
        answer = service.post("/contracts", json=_contract())
    finally:
        del app_service.contracts

    assert answer.status_code == 201, answer.text
    assert seen == [True]


def test_a_write_whose_record_cannot_be_kept_writes_nothing(
    service: TestClient, issuer: TestIssuer
) -> None:
    service.headers.update(issuer.headers("ehr", organization=UNIT))

    happened, answer = _watched_write(service, kept=False)

    assert happened == ["route runs", "record failed"]
    assert answer.status_code == 503
    assert "nothing was written" in answer.json()["detail"]
