"""Rest-hook Subscriptions are active and deliver: how changes made in HAPI reach the service."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.support import free_port, load_data

DELIVERY_TIMEOUT = 90.0
ACTIVATION_TIMEOUT = 30.0


class _Receiver(ThreadingHTTPServer):
    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.paths: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        self.server.paths.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_POST = _record  # noqa: N815 - http.server's naming
    do_PUT = _record  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("resource_type", "body"),
    [
        pytest.param("CarePlan", "hapi/careplan-valid.json", id="a-type-the-service-watches"),
        # No other Subscription names Basic: the launcher's filter keeps such changes out of
        # HAPI's matcher, and must let them in once a Subscription that names them is active.
        pytest.param("Basic", "hapi/basic.json", id="a-type-no-other-subscription-names"),
    ],
)
def test_rest_hook_subscription_becomes_active_and_delivers_a_change(
    fhir: httpx.Client, system: str, receiver: _Receiver, resource_type: str, body: str
) -> None:
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": f"test: {resource_type} changes reach a receiver",
        "criteria": f"{resource_type}?identifier={system}|",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }
    created = fhir.post("/Subscription", json=subscription)
    assert created.status_code == 201, created.text
    subscription_id = created.json()["id"]
    try:
        assert _wait_for_status(fhir, subscription_id, "active") == "active"
        watched = load_data(body) | {"identifier": [{"system": system, "value": "watched"}]}

        resource_id = _create_until_delivered(fhir, watched, receiver)

        assert f"/hook/{resource_type}/{resource_id}" in receiver.paths
    finally:
        fhir.delete(f"/Subscription/{subscription_id}")


def _wait_for_status(fhir: httpx.Client, subscription_id: str, wanted: str) -> str:
    # HAPI activates a requested Subscription asynchronously, a moment after the create.
    deadline = time.monotonic() + ACTIVATION_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        status = fhir.get(f"/Subscription/{subscription_id}").json()["status"]
        if status == wanted:
            break
        time.sleep(0.5)
    return status


def _create_until_delivered(
    fhir: httpx.Client, resource: dict[str, Any], receiver: _Receiver
) -> str:
    # HAPI registers a new subscription asynchronously; a change made in the first moments may
    # be matched before the registry knows it. Each write is a new change, so writes are
    # repeated until one is delivered, within a bounded time.
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    path = f"/{resource['resourceType']}"
    resource_id = fhir.post(path, json=resource).json()["id"]
    while time.monotonic() < deadline:
        for _ in range(10):
            if any(seen.startswith(f"/hook{path}/{resource_id}") for seen in receiver.paths):
                return str(resource_id)
            time.sleep(0.5)
        now = fhir.get(f"{path}/{resource_id}").json()
        touched = {"system": "urn:test:touched", "value": str(time.time())}
        now["identifier"] = [*resource["identifier"], touched]
        fhir.put(f"{path}/{resource_id}", json=now)
    pytest.fail(f"no delivery within {DELIVERY_TIMEOUT:.0f} s; receiver saw {receiver.paths}")
