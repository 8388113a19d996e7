"""HAPI's calls to the hooks: answered ahead of the request layers, only with HAPI's token, and
waking what each hook stands for. (That a change stored in HAPI reaches a webhook through the
hook: ``tests/fhir_service/sync/test_notifications.py``.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.settings import Settings
from fhir_service.sync import Notifications
from tests.auth import TestIssuer

HOOKS = {"/hooks/hapi": "feed_wake", "/hooks/hapi/time-types": "time_types_changed"}


@pytest.fixture
def service(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[TestClient]:
    settings = Settings(
        hapi_url=conformance_loaded,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        **issuer.settings(),
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while _notifications(client).hook_token is None:
            assert time.monotonic() < deadline, "the hook token was never made"
            time.sleep(0.1)
        yield client


def _notifications(client: TestClient) -> Notifications:
    notifications: Notifications = client.app.state.service.notifications  # type: ignore[attr-defined]
    return notifications


def _woken(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hooks' events set from now on, by name."""
    notifications = _notifications(client)
    woken: list[str] = []
    for name in HOOKS.values():
        event = getattr(notifications, name)
        monkeypatch.setattr(event, "set", lambda name=name: woken.append(name))
    return woken


@pytest.mark.parametrize("path", list(HOOKS))
def test_hapi_s_call_wakes_its_hook_s_reader_ahead_of_the_request_layers(
    service: TestClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    woken = _woken(service, monkeypatch)
    token = _notifications(service).hook_token

    response = service.post(path, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 204
    assert woken == [HOOKS[path]]
    # Every request through the layers leaves with its request id; a hook's never met them.
    assert "x-request-id" not in response.headers
    # Still counted with the other requests, as when it was a route.
    metrics = service.get("/metrics").text
    assert f'fhir_service_http_requests_total{{method="POST",route="{path}",status="204"}} 1.0' in (
        metrics
    )


@pytest.mark.parametrize("path", list(HOOKS))
def test_a_call_without_hapi_s_token_is_refused_and_wakes_nothing(
    service: TestClient, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    woken = _woken(service, monkeypatch)
    token = _notifications(service).hook_token

    anonymous = service.post(path)
    wrong = service.post(path, headers={"Authorization": "Bearer nope"})
    basic = service.post(path, headers={"Authorization": f"Basic {token}"})

    assert [anonymous.status_code, wrong.status_code, basic.status_code] == [401, 401, 401]
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert anonymous.headers["Content-Type"] == "application/problem+json"
    assert woken == []


def test_other_methods_on_a_hook_pass_on_to_the_router(service: TestClient) -> None:
    token = _notifications(service).hook_token

    response = service.get("/hooks/hapi", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 404
    assert "x-request-id" in response.headers
