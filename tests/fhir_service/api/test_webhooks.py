"""The webhook routes: register, list, read, delete, and clear refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.settings import Settings
from tests.auth import TestIssuer

SECRET = "a-test-secret-that-is-long-enough"
PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def service(hapi_base_url: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[TestClient]:
    settings = Settings(
        hapi_url=hapi_base_url,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        webhook_allowed_hosts="*.example",
        **issuer.settings(),
    )
    headers = issuer.headers("ehr", organization="hsa-id|SE2321000065-1254")
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False, headers=headers) as client:
        deadline = time.monotonic() + 60
        while client.get("/webhooks").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield client


def test_a_webhook_is_registered_listed_read_and_deleted_without_showing_its_secret(
    service: TestClient,
) -> None:
    created = service.post(
        "/webhooks",
        json={
            "url": "https://ehr.region.example/events",
            "secret": SECRET,
            "patient": {"kind": "personnummer", "value": "191212121212"},
            "careUnit": {"kind": "hsa-id", "value": "SE2321000065-1254"},
        },
    )
    webhook_id = created.json()["id"]

    listed = service.get("/webhooks")
    read = service.get(f"/webhooks/{webhook_id}")
    deleted = service.delete(f"/webhooks/{webhook_id}")
    after = service.get(f"/webhooks/{webhook_id}")

    assert created.status_code == 201, created.text
    assert created.headers["Location"] == f"/webhooks/{webhook_id}"
    assert SECRET not in created.text + listed.text + read.text
    assert read.json()["patient"] == {"kind": "personnummer", "value": "191212121212"}
    assert read.json()["careUnit"] == {"kind": "hsa-id", "value": "SE2321000065-1254"}
    assert webhook_id in [w["id"] for w in listed.json()]
    assert deleted.status_code == 204
    assert after.status_code == 404
    assert after.headers["Content-Type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"url": "https://elsewhere.org/x", "secret": SECRET}, "allowed webhook hosts"),
        ({"url": "https://u:p@ehr.example/x", "secret": SECRET}, "credentials"),
        ({"url": "http://ehr.example/x", "secret": SECRET}, "https"),
        ({"url": "https://ehr.example/x", "secret": "short"}, "at least 24"),
        (
            {
                "url": "https://ehr.example/x",
                "secret": SECRET,
                "patient": {"kind": "personnummer", "value": "191212121213"},
            },
            "check digit",
        ),
        (
            {
                "url": "https://ehr.example/x",
                "secret": SECRET,
                "careUnit": {"kind": "personnummer", "value": "191212121212"},
            },
            "careUnit",
        ),
        ({"url": "https://ehr.example/x", "secret": SECRET, "extra": 1}, "Extra inputs"),
    ],
)
def test_bad_registrations_get_a_problem_saying_why(
    service: TestClient, body: dict[str, object], words: str
) -> None:
    response = service.post("/webhooks", json=body)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == PROBLEM_JSON
    assert words in response.text
    assert service.get("/webhooks").json() == []


def test_the_hapi_hook_refuses_calls_without_the_token(service: TestClient) -> None:
    anonymous = service.post("/hooks/hapi")
    wrong = service.post("/hooks/hapi", headers={"Authorization": "Bearer nope"})

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
