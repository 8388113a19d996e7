"""The webhook routes: register, list, read, delete, and clear refusals."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_service import servicedb
from fhir_service.api import create_app
from fhir_service.contract import IdentifierKind
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.settings import Settings
from fhir_service.sync.webhook_registrations import Reach, TargetPolicy, WebhookRegistry
from tests.auth import TestIssuer

SECRET = "a-test-secret-that-is-long-enough"
PROBLEM_JSON = "application/problem+json"
UNIT_ID = "SE2321000065-1254"
UNIT = f"hsa-id|{UNIT_ID}"
PATIENT = "197506258933"
# There is no DNS here: receivers are registered at a public address (example.com's, once).
TARGET = "https://93.184.215.14"


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@contextmanager
def _running(settings: Settings, issuer: TestIssuer) -> Iterator[TestClient]:
    headers = issuer.headers("ehr", organization=UNIT)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False, headers=headers) as client:
        deadline = time.monotonic() + 60
        while client.get("/webhooks").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield client


@pytest.fixture
def service(hapi_base_url: str, database: str, issuer: TestIssuer) -> Iterator[TestClient]:
    settings = Settings(
        hapi_url=hapi_base_url,
        database_url=database,
        webhook_allowed_hosts="*.example,93.184.215.14",
        **issuer.settings(),
    )
    with _running(settings, issuer) as client:
        yield client


@pytest.fixture(scope="module")
def open_service(
    hapi_base_url: str, issuer: TestIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The service under the default webhook policy: any host, https only, public addresses."""
    database = tmp_path_factory.mktemp("open") / "service.db"
    settings = Settings(
        hapi_url=hapi_base_url, database_url=f"sqlite:///{database}", **issuer.settings()
    )
    assert not settings.webhook_allowed_hosts
    assert not settings.webhook_allow_private_networks
    with _running(settings, issuer) as client:
        yield client


def test_a_webhook_is_registered_listed_read_and_deleted_without_showing_its_secret(
    service: TestClient,
) -> None:
    created = service.post(
        "/webhooks",
        json={
            "url": f"{TARGET}/events",
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
        ({"url": "https://ehr.example/x", "secret": SECRET, "extra": 1}, "not a field here"),
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


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("2130706433:8443", "dotted-decimal"),
        ("0x7f000001", "dotted-decimal"),
        ("0177.0.0.1", "dotted-decimal"),
        ("127.1", "dotted-decimal"),
        ("0", "dotted-decimal"),
        ("2852039166", "dotted-decimal"),  # 169.254.169.254, the cloud metadata service
        ("127.0.0.1", "local or private"),
        ("127.0.0.1.", "local or private"),
        ("[::1]", "local or private"),
        ("[::ffff:127.0.0.1]", "local or private"),
        ("[fe80::1]", "local or private"),
        ("10.0.0.1", "local or private"),
        ("192.168.1.1", "local or private"),
        ("100.64.0.1", "local or private"),
        ("169.254.169.254", "local or private"),
        ("0.0.0.0", "local or private"),
        ("localhost", "local or private"),
        ("localhost.", "local or private"),
        ("LOCALHOST.", "local or private"),
        # ::1 where /etc/hosts names it, nothing where it does not: refused either way.
        ("ip6-localhost", "local or private|does not resolve"),
    ],
)
def test_targets_on_the_services_own_networks_are_refused_in_every_spelling(
    open_service: TestClient, host: str, words: str
) -> None:
    response = open_service.post(
        "/webhooks", json={"url": f"https://{host}/events", "secret": SECRET}
    )

    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == PROBLEM_JSON
    assert re.search(words, response.json()["detail"])


def _inward_names() -> list[str]:
    """This machine's name and every name /etc/hosts gives a loopback or private address."""
    names = {socket.gethostname()}
    for line in Path("/etc/hosts").read_text(encoding="utf-8").splitlines():
        address, *aliases = line.partition("#")[0].split() or [""]
        try:
            inward = not ipaddress.ip_address(address.partition("%")[0]).is_global
        except ValueError:
            continue
        if inward:
            names.update(aliases)
    return sorted(names)


@pytest.mark.parametrize("name", _inward_names())
def test_names_that_resolve_to_the_services_own_networks_are_refused(
    open_service: TestClient, name: str
) -> None:
    response = open_service.post(
        "/webhooks", json={"url": f"https://{name}/events", "secret": SECRET}
    )

    assert response.status_code == 422, response.text
    assert "local or private" in response.json()["detail"]


def test_a_public_address_is_taken_without_any_lookup(open_service: TestClient) -> None:
    # No DNS here: an address in dotted decimal is its own and needs none.
    created = open_service.post("/webhooks", json={"url": f"{TARGET}/events", "secret": SECRET})

    assert created.status_code == 201, created.text
    assert open_service.delete(f"/webhooks/{created.json()['id']}").status_code == 204


def test_another_caller_neither_sees_nor_removes_a_webhook(
    service: TestClient, issuer: TestIssuer
) -> None:
    created = service.post("/webhooks", json={"url": f"{TARGET}/a", "secret": SECRET})
    webhook_id = created.json()["id"]
    # The same care unit, another EHR system: a webhook is its registrant's alone.
    other = issuer.headers("ehr", organization=UNIT, subject="another-ehr")

    listed = service.get("/webhooks", headers=other)
    read = service.get(f"/webhooks/{webhook_id}", headers=other)
    deleted = service.delete(f"/webhooks/{webhook_id}", headers=other)

    assert created.status_code == 201, created.text
    assert listed.status_code == 200
    assert listed.json() == []
    assert read.status_code == 404
    assert deleted.status_code == 404
    assert service.get(f"/webhooks/{webhook_id}").status_code == 200


def test_a_webhook_keeps_the_reach_of_the_token_that_registered_it(
    service: TestClient, issuer: TestIssuer, database: str
) -> None:
    by_unit = service.post("/webhooks", json={"url": f"{TARGET}/a", "secret": SECRET})
    by_patient = service.post(
        "/webhooks",
        json={"url": f"{TARGET}/b", "secret": SECRET},
        headers=issuer.headers("patient", patient=f"personnummer|{PATIENT}"),
    )

    registry = WebhookRegistry(servicedb.make_engine(database), TargetPolicy())
    unit_reach = registry.get(by_unit.json()["id"])
    patient_reach = registry.get(by_patient.json()["id"])
    assert unit_reach is not None
    assert patient_reach is not None
    unit_token = f"{system_for(IdentifierKind.HSA_ID)}|{UNIT_ID}"
    assert unit_reach.reach == Reach(responsible_unit=unit_token)
    assert patient_reach.reach == Reach(
        patient=f"{system_for(IdentifierKind.PERSONNUMMER)}|{PATIENT}"
    )


def test_a_patient_cannot_register_for_another_patients_changes(
    service: TestClient, issuer: TestIssuer
) -> None:
    patient = issuer.headers("patient", patient=f"personnummer|{PATIENT}")

    other = service.post(
        "/webhooks",
        json={
            "url": f"{TARGET}/a",
            "secret": SECRET,
            "patient": {"kind": "personnummer", "value": "191212121212"},
        },
        headers=patient,
    )
    own = service.post(
        "/webhooks",
        json={
            "url": f"{TARGET}/a",
            "secret": SECRET,
            "patient": {"kind": "personnummer", "value": PATIENT},
        },
        headers=patient,
    )

    assert other.status_code == 403
    assert other.headers["Content-Type"] == PROBLEM_JSON
    assert own.status_code == 201, own.text
    assert [w["id"] for w in service.get("/webhooks", headers=patient).json()] == [own.json()["id"]]


def test_a_booking_platform_cannot_register_webhooks(
    service: TestClient, issuer: TestIssuer
) -> None:
    response = service.post(
        "/webhooks",
        json={"url": f"{TARGET}/a", "secret": SECRET},
        headers=issuer.headers("booking"),
    )

    assert response.status_code == 403
