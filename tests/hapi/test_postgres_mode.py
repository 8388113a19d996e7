"""HAPI on PostgreSQL: the launcher's ``--hapi.jdbc-url=jdbc:postgresql://...`` mode, which is how
``docker-compose.yml`` runs HAPI.

The rest of the suite runs HAPI on in-memory H2; this module starts one launcher of its own on a
fresh PostgreSQL database (a start costs ~45 s, so one for the whole module), writes an example
contract Bundle, and checks it reads back intact, that re-posting it changes nothing, and that the
rows really are in PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import URL, make_url

from fhir_service.cli.local_hapi import HapiStartError, LocalHapi
from tests.postgres import fresh_database
from tests.support import HAPI_START_TIMEOUT, free_port

EXAMPLE = Path(__file__).parents[2] / "profiles" / "examples" / "knee-replacement.bundle.json"
CONTRACT_SYSTEM = "http://fhir.patient-contracts.org/identifier/contract"


def _jdbc_url(database: URL) -> str:
    return f"jdbc:postgresql://{database.host}:{database.port}/{database.database}"


def _connect(database: URL) -> psycopg.Connection[Any]:
    conninfo = database.set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(conninfo)


def _load_example() -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return bundle


def _post(client: httpx.Client, bundle: dict[str, Any]) -> dict[str, Any]:
    response = client.post("", json=bundle)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == "transaction-response"
    assert len(body["entry"]) == len(bundle["entry"])
    return body


def _careplan_entry(bundle: dict[str, Any]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        e for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
    ]
    assert len(entries) == 1
    return entries[0]


def _as_sent(resource: Any, full_urls: dict[str, str]) -> Any:
    """A resource read from HAPI, put back into the form it was sent in: each reference to a
    stored resource becomes the ``fullUrl`` it had in the Bundle, and what the server adds (id,
    versionId, lastUpdated, source) is dropped."""
    if isinstance(resource, list):
        return [_as_sent(item, full_urls) for item in resource]
    if not isinstance(resource, dict):
        return resource
    result = {key: _as_sent(value, full_urls) for key, value in resource.items()}
    if isinstance(resource.get("reference"), str):
        target = resource["reference"].split("/_history/")[0]
        result["reference"] = full_urls.get(target, resource["reference"])
    if "resourceType" in resource:
        result.pop("id", None)
        meta = {k: v for k, v in result.pop("meta", {}).items() if k in ("profile", "tag")}
        if meta:
            result["meta"] = meta
    return result


@pytest.fixture(scope="module")
def database() -> Iterator[URL]:
    """A new PostgreSQL database for this module, dropped at the end."""
    with fresh_database() as url:
        yield make_url(url)


@pytest.fixture(scope="module")
def hapi(database: URL, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a launcher running on ``database``; stopped at the end."""
    server = LocalHapi(
        port=free_port(),
        jdbc_url=_jdbc_url(database),
        jdbc_username=database.username,
        jdbc_password=database.password,
    )
    log_path = tmp_path_factory.mktemp("hapi-postgres") / "hapi.log"
    with log_path.open("ab") as log:
        server.start(log=log)
    try:
        server.wait_until_ready(HAPI_START_TIMEOUT, log_path)
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(hapi: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=hapi,
        headers={"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"},
        timeout=120.0,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def first_post(client: httpx.Client) -> dict[str, Any]:
    """The transaction-response to the example Bundle's first write into the empty database."""
    return _post(client, _load_example())


@pytest.fixture(scope="module")
def full_urls(first_post: dict[str, Any]) -> dict[str, str]:
    """``Type/id`` of each stored resource -> the ``fullUrl`` it had in the Bundle."""
    sent = _load_example()["entry"]
    return {
        answer["response"]["location"].split("/_history/")[0]: entry["fullUrl"]
        for entry, answer in zip(sent, first_post["entry"], strict=True)
    }


# First, so that it runs before the module's server starts: two JVMs at once on the CI machine's
# two cores would slow both.
def test_a_wrong_password_makes_the_launcher_exit_and_say_why(
    database: URL, tmp_path: Path
) -> None:
    server = LocalHapi(
        port=free_port(),
        jdbc_url=_jdbc_url(database),
        jdbc_username=database.username,
        jdbc_password="not-the-password",
    )
    log_path = tmp_path / "hapi.log"
    with log_path.open("ab") as log:
        server.start(log=log)
    try:
        # "exited", not "did not answer within": the launcher gives up by itself, at once.
        with pytest.raises(HapiStartError, match=r"^HAPI exited with code [1-9]") as failure:
            server.wait_until_ready(HAPI_START_TIMEOUT, log_path)
    finally:
        server.stop()

    assert f'password authentication failed for user "{database.username}"' in str(failure.value)


def test_the_first_post_creates_every_entry(first_post: dict[str, Any]) -> None:
    sent = _load_example()["entry"]

    assert [e["response"]["status"] for e in first_post["entry"]] == ["201 Created"] * len(sent)
    assert all(e["response"]["location"].endswith("/_history/1") for e in first_post["entry"])
    assert [e["response"]["location"].split("/")[0] for e in first_post["entry"]] == [
        e["resource"]["resourceType"] for e in sent
    ]


def test_the_careplan_and_what_it_refers_to_read_back_as_sent(
    client: httpx.Client, full_urls: dict[str, str]
) -> None:
    bundle = _load_example()
    sent = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    careplan_entry = _careplan_entry(bundle)
    sent_careplan = careplan_entry["resource"]
    contract_id = sent_careplan["identifier"][0]["value"]

    response = client.get(
        "/CarePlan",
        params=[
            ("identifier", f"{CONTRACT_SYSTEM}|{contract_id}"),
            ("_include", "CarePlan:subject"),
            ("_include", "CarePlan:care-team"),
            ("_include", "CarePlan:goal"),
            ("_include", "CarePlan:activity-reference"),
            ("_revinclude", "Provenance:target"),
        ],
    )

    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    matches = [e["resource"] for e in entries if e["search"]["mode"] == "match"]
    assert len(matches) == 1
    careplan = matches[0]
    assert careplan["identifier"] == [{"system": CONTRACT_SYSTEM, "value": contract_id}]
    assert careplan["meta"]["versionId"] == "1"
    # The CarePlan as sent, each reference now pointing at the stored resource made from the
    # entry it named: business fields, extensions, activities, narrative and all.
    assert _as_sent(careplan, full_urls) == sent_careplan

    # The includes are exactly the resources the CarePlan refers to, plus its Provenance.
    referred = [
        sent_careplan["subject"],
        *sent_careplan["careTeam"],
        *sent_careplan["goal"],
        *(a["reference"] for a in sent_careplan["activity"] if "reference" in a),
    ]
    (provenance_url,) = (
        url
        for url, r in sent.items()
        if r["resourceType"] == "Provenance"
        and [t["reference"] for t in r["target"]] == [careplan_entry["fullUrl"]]
    )
    included = {
        full_urls[f"{e['resource']['resourceType']}/{e['resource']['id']}"]: e["resource"]
        for e in entries
        if e["search"]["mode"] == "include"
    }
    assert sorted(included) == sorted([r["reference"] for r in referred] + [provenance_url])
    for url, resource in included.items():
        assert resource.get("identifier") == sent[url].get("identifier")
        assert _as_sent(resource, full_urls) == sent[url], url
    # Provenance.target is stored with the CarePlan's version (an auto-versioned path).
    stored_target = included[provenance_url]["target"]
    assert [t["reference"] for t in stored_target] == [f"CarePlan/{careplan['id']}/_history/1"]


def test_reposting_the_bundle_answers_200_and_writes_no_new_versions(
    client: httpx.Client, first_post: dict[str, Any], database: URL
) -> None:
    bundle = _load_example()

    second = _post(client, bundle)

    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK"] * len(bundle["entry"])
    assert [e["response"]["location"] for e in second["entry"]] == [
        e["response"]["location"] for e in first_post["entry"]
    ]
    history = client.get("/_history", params={"_count": "100"})
    assert history.status_code == 200, history.text
    assert history.json()["total"] == len(bundle["entry"])
    with _connect(database) as connection:
        versions = connection.execute("SELECT count(*), max(res_ver) FROM hfj_res_ver").fetchone()
    assert versions == (len(bundle["entry"]), 1)


def test_the_resources_are_stored_in_postgresql(database: URL, full_urls: dict[str, str]) -> None:
    bundle = _load_example()
    careplan_url = _careplan_entry(bundle)["fullUrl"]
    (careplan_id,) = (key for key, url in full_urls.items() if url == careplan_url)

    with _connect(database) as connection:
        careplans = connection.execute(
            "SELECT fhir_id FROM hfj_resource WHERE res_type = 'CarePlan'"
        ).fetchall()
        by_type = connection.execute(
            "SELECT res_type, count(*) FROM hfj_resource GROUP BY res_type"
        ).fetchall()

    assert careplans == [(careplan_id.removeprefix("CarePlan/"),)]
    assert dict(by_type) == Counter(e["resource"]["resourceType"] for e in bundle["entry"])
