"""SMART discovery and backend-services tokens, driven by the SMART client ``fhirclient``.

The service runs as a process with the local development issuer; a backend-services client is
registered with ``fhir-service client``'s function and gets its own token by discovery
(CapabilityStatement ``oauth-uris``), then searches and reads its unit's contract through
``/fhir``, follows its subject and author, and creates and updates a Goal with fhirclient's
models.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhirclient import client as smart_client
from fhirclient.models.careplan import CarePlan
from fhirclient.models.goal import Goal
from fhirclient.models.patient import Patient
from fhirclient.models.practitionerrole import PractitionerRole

from fhir_service.cli.tokens import register_client
from fhir_service.mapping import urls
from fhir_service.security.dev_keys import DevKey, generate_key, mint_token, write_jwks
from fhir_service.settings import Settings
from tests.service_process import running_service
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
CLIENT_ID = "ehr-smart-backend"


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    data["id"] = f"smart-{uuid.uuid4().hex[:12]}"
    data["patient"]["identifier"]["value"] = unique_personnummer()
    return data


@pytest.fixture(scope="module")
def service(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("smart")
    environment = {
        "AUTH_LOCAL_ISSUER": "true",
        "DATA_DIR": str(directory),
        "HAPI_URL": conformance_loaded,
        "DATABASE_URL": f"sqlite:///{directory / 'service.db'}",
    }
    with running_service(environment, directory / "service.log") as base_url:
        yield base_url, directory


@pytest.fixture(scope="module")
def key(service: tuple[str, Path], contract: dict[str, Any]) -> DevKey:
    _, directory = service
    key = generate_key("ES256")
    write_jwks(directory / "client-jwks.json", [key])
    unit = contract["responsible_clinician"]["organization"]["identifier"]
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(data_dir=directory, auth_local_issuer=True)
    registered = register_client(
        settings,
        CLIENT_ID,
        "ehr",
        jwks=directory / "client-jwks.json",
        organization=f"{unit['kind']}|{unit['value']}",
        patient=None,
        out=out,
        err=err,
    )
    assert registered == 0, err.getvalue()
    return key


def _assertion(key: DevKey, base_url: str, client_id: str = CLIENT_ID) -> str:
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{base_url}/auth/token",
        "exp": int(time.time()) + 240,
        "jti": uuid.uuid4().hex,
    }
    return mint_token(key, claims)


def _token(key: DevKey, base_url: str, scope: str) -> httpx.Response:
    return httpx.post(
        f"{base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _assertion(key, base_url),
        },
    )


def test_discovery_names_the_local_issuers_token_endpoint_without_a_token(
    service: tuple[str, Path],
) -> None:
    base_url, _ = service

    document = httpx.get(f"{base_url}/fhir/.well-known/smart-configuration")
    statement = httpx.get(f"{base_url}/fhir/metadata", headers={"Accept": "application/fhir+json"})

    assert document.status_code == 200, document.text
    assert document.json()["token_endpoint"] == f"{base_url}/auth/token"
    assert "client-confidential-asymmetric" in document.json()["capabilities"]
    keys = httpx.get(document.json()["jwks_uri"]).json()["keys"]
    assert keys
    assert all("d" not in k for k in keys), "public keys only"
    [uris] = statement.json()["rest"][0]["security"]["extension"]
    assert {e["url"]: e["valueUri"] for e in uris["extension"]} == {
        "token": f"{base_url}/auth/token"
    }


def test_fhirclient_gets_a_token_by_discovery_and_reads_its_units_contract(
    service: tuple[str, Path], key: DevKey, contract: dict[str, Any]
) -> None:
    base_url, _ = service
    writer = _token(key, base_url, "system/CarePlan.cruds")
    assert writer.status_code == 200, writer.text
    bearer = {"Authorization": f"Bearer {writer.json()['access_token']}"}
    assert httpx.post(f"{base_url}/contracts", json=contract, headers=bearer).status_code == 201

    smart = smart_client.FHIRClient(
        settings={
            "app_id": CLIENT_ID,
            "api_base": f"{base_url}/fhir",
            "jwt_token": _assertion(key, base_url),
            "scope": "system/CarePlan.rs system/CareTeam.rs",
        },
        save_func=lambda state: None,
    )
    smart.wants_patient = False
    assert smart.prepare() is False, "no token yet: discovery found where to get one"
    smart.authorize()
    found = CarePlan.where(
        {"identifier": f"{urls.ID_CONTRACT}|{contract['id']}"}
    ).perform_resources(smart.server)

    assert smart.ready
    assert [plan.title for plan in found] == [contract["title"]]


def test_the_token_endpoint_grants_only_the_roles_scopes_and_refuses_strangers(
    service: tuple[str, Path], key: DevKey
) -> None:
    base_url, _ = service

    narrowed = _token(key, base_url, "system/CarePlan.rs user/AuditEvent.rs openid")
    beyond = _token(key, base_url, "system/AuditEvent.rs")
    stranger = httpx.post(
        f"{base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": "system/CarePlan.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _assertion(generate_key("ES256"), base_url, "nobody"),
        },
    )
    secret = httpx.post(f"{base_url}/auth/token", data={"grant_type": "password", "username": "x"})

    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "system/CarePlan.rs"
    assert narrowed.headers["cache-control"] == "no-store"
    assert (beyond.status_code, beyond.json()["error"]) == (400, "invalid_scope")
    assert (stranger.status_code, stranger.json()["error"]) == (401, "invalid_client")
    assert (secret.status_code, secret.json()["error"]) == (400, "unsupported_grant_type")


def test_fhirclient_follows_the_plan_and_writes_a_goal_with_its_own_token(
    service: tuple[str, Path], key: DevKey, contract: dict[str, Any]
) -> None:
    base_url, _ = service
    smart = smart_client.FHIRClient(
        settings={
            "app_id": CLIENT_ID,
            "api_base": f"{base_url}/fhir",
            "jwt_token": _assertion(key, base_url),
            "scope": "system/CarePlan.cruds system/Goal.cruds system/Patient.rs "
            "system/PractitionerRole.rs",
        },
        save_func=lambda state: None,
    )
    smart.wants_patient = False
    smart.prepare()
    smart.authorize()
    token = f"{urls.ID_CONTRACT}|{contract['id']}"
    [found] = CarePlan.where({"identifier": token}).perform_resources(smart.server)
    goal = Goal(
        {
            "resourceType": "Goal",
            "identifier": [{"system": urls.ID_GOAL, "value": f"{contract['id']}/fhirclient"}],
            "lifecycleStatus": "proposed",
            "description": {"text": "Promenera varje dag"},
            "subject": {"reference": found.subject.reference},
        }
    )

    plan = CarePlan.read(found.id, smart.server)
    patient = Patient.read(plan.subject.reference.split("/")[1], smart.server)
    author = PractitionerRole.read(plan.author.reference.split("/")[1], smart.server)
    created = goal.create(smart.server)
    stored = Goal.read(created["id"], smart.server)
    stored.description.text = "Promenera varje dag, en halvtimme"
    updated = stored.update(smart.server)

    assert plan.title == contract["title"]
    assert patient.identifier[0].value == contract["patient"]["identifier"]["value"]
    assert author.organization is not None
    assert created["meta"]["versionId"] == "1"
    assert updated is not None
    assert updated["description"]["text"] == "Promenera varje dag, en halvtimme"
