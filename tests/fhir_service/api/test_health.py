"""/health, /ready and /metrics, with the service pointed at the real HAPI (or at nothing)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from httpx import Response

from fhir_service.api import create_app
from fhir_service.api.access_rules import RULES, Public
from fhir_service.settings import Settings
from tests.auth import TestIssuer
from tests.support import free_port


def _client(hapi_url: str, database_url: str, data_dir: Path) -> TestClient:
    # The operations routes are public: the local issuer is there only because a service
    # never starts without some token issuer to trust.
    settings = Settings(
        hapi_url=hapi_url,
        database_url=database_url,
        ready_timeout_seconds=5.0,
        auth_local_issuer=True,
        data_dir=data_dir,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def service(hapi_base_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with _client(hapi_base_url, f"sqlite:///{tmp_path / 'service.db'}", tmp_path) as client:
        yield client


def test_health_answers_without_dependencies(tmp_path: Path) -> None:
    with _client(f"http://127.0.0.1:{free_port()}/fhir", "sqlite://", tmp_path) as client:
        response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_hapi_and_database_answer_and_profiles_are_loaded(
    service: TestClient,
) -> None:
    response = _ready_within(service, seconds=60)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {
            "hapi": {"status": "up"},
            "database": {"status": "up"},
            "profiles": {"status": "up"},
        },
    }


def _ready_within(
    service: TestClient,
    seconds: float,
    until: Callable[[Response], bool] = lambda r: r.status_code == 200,
) -> Response:
    # The schema migrates and the profiles load in the background after start.
    deadline = time.monotonic() + seconds
    response = service.get("/ready")
    while not until(response) and time.monotonic() < deadline:
        time.sleep(0.2)
        response = service.get("/ready")
    return response


def _check(response: Response, name: str) -> str:
    return str(response.json()["checks"][name]["status"])


def test_not_ready_when_nothing_listens_where_hapi_should_be(tmp_path: Path) -> None:
    hapi_url = f"http://127.0.0.1:{free_port()}/fhir"
    with _client(hapi_url, f"sqlite:///{tmp_path / 'service.db'}", tmp_path) as client:
        response = _ready_within(client, 30, until=lambda r: _check(r, "database") == "up")

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    problem = response.json()
    assert problem["status"] == 503
    assert problem["title"] == "Not ready"
    assert "HAPI FHIR server: cannot connect" in problem["detail"]
    assert "profiles are not yet loaded" in problem["detail"]
    assert problem["checks"]["hapi"]["status"] == "down"
    assert problem["checks"]["database"] == {"status": "up"}
    assert hapi_url not in response.text


def test_not_ready_when_the_service_database_cannot_be_opened(
    hapi_base_url: str, tmp_path: Path
) -> None:
    # A directory where the SQLite file should be: SQLite cannot open it.
    with _client(hapi_base_url, f"sqlite:///{tmp_path}", tmp_path) as client:
        response = client.get("/ready")

    assert response.status_code == 503
    problem = response.json()
    assert "service database: OperationalError" in problem["detail"]
    assert problem["checks"]["hapi"] == {"status": "up"}


def test_request_id_is_kept_when_given_and_made_when_not(service: TestClient) -> None:
    given = service.get("/health", headers={"X-Request-ID": "ehr-abc.123"})
    made = service.get("/health")
    hostile = service.get("/health", headers={"X-Request-ID": "x\r\nSet-Cookie: a=b"})

    assert given.headers["x-request-id"] == "ehr-abc.123"
    assert uuid.UUID(made.headers["x-request-id"])
    assert uuid.UUID(hostile.headers["x-request-id"])


def test_metrics_count_requests_by_route_template_and_hapi_calls(service: TestClient) -> None:
    _ready_within(service, seconds=60)
    service.get("/ready")
    service.get("/ready")
    service.get(f"/no-such-thing/{uuid.uuid4()}")

    text = service.get("/metrics").text

    assert 'fhir_service_http_requests_total{method="GET",route="/ready",status="200"} 3.0' in text
    assert (
        'fhir_service_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0'
        in text
    )
    assert 'fhir_service_hapi_requests_total{method="POST",outcome="200"} 1.0' in text
    assert "fhir_service_http_request_duration_seconds_bucket" in text
    assert "fhir_service_hapi_request_duration_seconds_bucket" in text


def test_metrics_show_the_audit_records_hapi_does_not_have_yet(
    tmp_path: Path, issuer: TestIssuer
) -> None:
    settings = Settings(
        hapi_url=f"http://127.0.0.1:{free_port()}/fhir",
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        **issuer.settings(),
    )
    headers = issuer.headers("ehr", organization="hsa-id|SE2321000065-1254")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        _ready_within(client, 30, until=lambda r: _check(r, "database") == "up")
        answers = [client.get("/contracts", headers=headers) for _ in range(3)]

        text = client.get("/metrics").text

    # HAPI is down: the searches fail, but their audit records wait in the service DB.
    assert [a.status_code for a in answers] == [503] * 3
    assert "fhir_service_audit_records_pending 3.0" in text
    assert "fhir_service_webhook_deliveries_pending 0.0" in text


def test_a_backlog_that_cannot_be_read_is_nan_and_the_scrape_still_works(
    hapi_base_url: str, tmp_path: Path
) -> None:
    # A directory where the SQLite file should be: SQLite cannot open it.
    with _client(hapi_base_url, f"sqlite:///{tmp_path}", tmp_path) as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    assert "fhir_service_audit_records_pending NaN" in response.text
    assert "fhir_service_webhook_deliveries_pending NaN" in response.text


def test_a_bug_is_a_problem_json_500_that_reveals_nothing(
    hapi_base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        hapi_url=hapi_base_url, database_url="sqlite://", auth_local_issuer=True, data_dir=tmp_path
    )
    app = create_app(settings)

    async def broken() -> None:
        raise RuntimeError("secret detail: patient 19121212-1212")

    app.add_api_route("/broken", broken)
    monkeypatch.setitem(RULES, "broken", Public.OPERATIONS)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/broken", headers={"X-Request-ID": "bug-1"})

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == "bug-1"
    assert response.headers["x-request-id"] == "bug-1"
    assert "19121212" not in response.text
    assert "RuntimeError" not in response.text


def test_unknown_route_is_a_problem_json_404(service: TestClient) -> None:
    response = service.get("/contracts-that-do-not-exist")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Not Found"


def test_metrics_show_how_far_the_change_feed_lags_behind_hapi(
    hapi_base_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        hapi_url=hapi_base_url,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        auth_local_issuer=True,
        data_dir=tmp_path,
        change_feed_interval_seconds=0.5,
    )
    careplan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"identifier": {"system": "urn:example:patients", "value": "1"}},
    }
    measured = 0.0
    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as service,
        httpx.Client(base_url=hapi_base_url, timeout=60) as other_system,
    ):
        assert _ready_within(service, seconds=60).status_code == 200
        deadline = time.monotonic() + 60
        # Changes are written until one reaches the feed: it reads from where it first started.
        while not measured and time.monotonic() < deadline:
            assert other_system.post("/CarePlan", json=careplan).status_code == 201
            time.sleep(1.0)
            text = service.get("/metrics").text
            measured = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("fhir_service_change_feed_lag_seconds_count")
            )

    assert measured >= 1
