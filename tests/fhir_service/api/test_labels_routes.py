"""``GET /labels`` in the service against the real HAPI: every table's names, cached by ETag."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from fastapi.testclient import TestClient

from fhir_service.mapping.tables import code_table_names
from fhir_service.security.roles import Role
from tests.auth import TestIssuer
from tests.service_app import ready_app

MUNICIPALITY = "hsa-id|SE2120000662-1001"


@pytest.fixture
def service(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[TestClient]:
    with ready_app(conformance_loaded, tmp_path, issuer) as client:
        yield client


def test_every_table_s_names_come_in_the_language_asked_cacheable_for_an_hour(
    service: TestClient,
) -> None:
    response = service.get("/labels", headers={"Accept-Language": "nn-NO, en;q=0.5"})

    assert response.status_code == 200, response.text
    assert response.headers["Content-Language"] == "nb"
    assert "accept-language" in response.headers["Vary"].lower()
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    body = response.json()
    assert body["language"] == "nb"
    assert set(body["labels"]) == {*code_table_names(), "relationship", "schedule-unit"}
    assert body["labels"]["contract-status"]["revoked"] == "Trukket tilbake"
    assert body["labels"]["schedule-unit"]["wk"] == "uke"


def test_a_current_etag_gets_304_without_a_body_and_another_one_the_names(
    service: TestClient,
) -> None:
    first = service.get("/labels", params={"lang": "en"})
    etag = first.headers["ETag"]

    same = service.get("/labels", params={"lang": "en"}, headers={"If-None-Match": etag})
    weak = service.get(
        "/labels", params={"lang": "en"}, headers={"If-None-Match": f'"other", W/{etag}'}
    )
    stale = service.get("/labels", params={"lang": "en"}, headers={"If-None-Match": '"other"'})
    swedish = service.get("/labels", headers={"If-None-Match": etag})

    assert re.fullmatch(r'"[0-9a-f]{32}"', etag), "a strong ETag"
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["ETag"] == etag
    assert same.headers["Content-Language"] == "en"
    assert same.headers["Cache-Control"] == "public, max-age=3600"
    assert weak.status_code == 304
    assert stale.status_code == 200
    assert stale.json() == first.json()
    assert swedish.status_code == 200
    assert swedish.headers["ETag"] != etag
    assert swedish.json()["labels"]["contract-status"]["agreed"] == "Överenskommet"


@pytest.mark.parametrize("role", get_args(Role))
def test_every_role_reads_the_names(service: TestClient, issuer: TestIssuer, role: Role) -> None:
    claims = {"patient": "personnummer|19121212-1212"} if role == "patient" else {}
    headers = issuer.headers(role, organization=MUNICIPALITY, **claims)

    response = service.get("/labels", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["labels"]["activity-owner"]["patient"] == "Patienten"
