"""Webhook targets are checked before they are stored; registrations keep their filters,
their owner and the reach of the token that made them."""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import ip_address

import pytest
from sqlalchemy import Engine

from fhir_service.sync.webhook_registrations import (
    InvalidWebhookError,
    Reach,
    Registration,
    TargetPolicy,
    WebhookRegistry,
)

SECRET = "a-test-secret-that-is-long-enough"
EVERYONE = Reach()
# There is no DNS here: every receiver's name resolves to a public address (example.com's, once).
POLICY = TargetPolicy(resolver=lambda host, port: [ip_address("93.184.215.14")])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://ehr.example/events", "https"),
        ("http://ehr.example/events", "plain http"),
        ("https://user:pass@ehr.example/events", "credentials"),
        ("https://token@ehr.example/events", "credentials"),
        ("https://ehr.example/events#frag", "fragment"),
        ("https:///events", "no host"),
        ("https://127.0.0.1/events", "private"),
        ("https://10.1.2.3/events", "private"),
        ("https://169.254.169.254/latest", "private"),
        ("https://[::1]/events", "private"),
        ("https://localhost/events", "private"),
        ("https://elsewhere.example/events", "not among the allowed"),
    ],
)
def test_unsafe_targets_are_refused_with_the_reason(url: str, reason: str) -> None:
    policy = TargetPolicy(allowed_hosts=("*.example", "ehr.example"))
    if reason == "not among the allowed":
        policy = TargetPolicy(allowed_hosts=("*.region.example",))

    with pytest.raises(InvalidWebhookError, match=reason):
        policy.check(url)


def test_the_policy_admits_what_it_is_told_to() -> None:
    local = TargetPolicy(allow_http=True, allow_private_networks=True)
    regional = TargetPolicy(allowed_hosts=("*.region.example",), resolver=POLICY.resolver)

    assert local.check("http://127.0.0.1:9000/events") == "http://127.0.0.1:9000/events"
    assert regional.check("https://ehr.region.example/hook") == "https://ehr.region.example/hook"


def test_registrations_keep_their_filters_and_are_removed_with_their_deliveries(
    engine: Engine,
) -> None:
    registry = WebhookRegistry(engine, POLICY)
    by_patient = registry.register(
        "https://ehr.example/a",
        SECRET,
        owner="ehr-a",
        reach=EVERYONE,
        patient_identifier="urn:system|191212121212",
    )
    by_unit = registry.register(
        "https://ehr.example/b", SECRET, owner="ehr-b", reach=EVERYONE, care_unit="urn:hsa|SE1-1"
    )

    listed = registry.list()
    removed = registry.remove(by_patient.id)

    assert [r.id for r in listed] == [by_patient.id, by_unit.id]
    assert by_patient.wants(frozenset({"urn:system|191212121212"}), frozenset())
    assert not by_patient.wants(frozenset({"urn:system|other"}), frozenset({"urn:hsa|SE1-1"}))
    assert by_unit.wants(frozenset(), frozenset({"urn:hsa|SE1-1"}))
    assert not by_unit.wants(frozenset({"urn:system|191212121212"}), frozenset())
    assert removed
    assert not registry.remove(by_patient.id)
    assert [r.id for r in registry.list()] == [by_unit.id]


def test_each_owner_sees_and_removes_only_their_own_registrations(engine: Engine) -> None:
    registry = WebhookRegistry(engine, POLICY)
    mine = registry.register("https://ehr.example/a", SECRET, owner="ehr-a", reach=EVERYONE)
    theirs = registry.register("https://ehr.example/b", SECRET, owner="ehr-b", reach=EVERYONE)

    assert [r.id for r in registry.list("ehr-a")] == [mine.id]
    assert registry.get(theirs.id, "ehr-a") is None
    assert registry.get(mine.id, "ehr-a") == mine
    assert not registry.remove(theirs.id, "ehr-a")
    assert registry.get(theirs.id) == theirs
    assert registry.remove(mine.id, "ehr-a")


PATIENT = "urn:system|191212121212"
UNIT = "urn:hsa|SE1-1"


@pytest.mark.parametrize(
    ("reach", "patients", "care_units", "responsible", "wanted"),
    [
        (Reach(patient=PATIENT), {PATIENT}, {UNIT}, UNIT, True),
        (Reach(patient=PATIENT), {"urn:system|other"}, {UNIT}, UNIT, False),
        (Reach(responsible_unit=UNIT), {PATIENT}, {UNIT}, UNIT, True),
        # Taking part in a contract is not holding it: the unit's token could not read it.
        (Reach(responsible_unit=UNIT), {PATIENT}, {UNIT, "urn:hsa|SE2-2"}, "urn:hsa|SE2-2", False),
        (Reach(responsible_unit=UNIT), {PATIENT}, {UNIT}, None, False),
    ],
)
def test_deliveries_never_leave_the_reach_of_the_token_that_registered(
    engine: Engine,
    reach: Reach,
    patients: set[str],
    care_units: set[str],
    responsible: str | None,
    wanted: bool,
) -> None:
    # The care-unit filter matches every case: only the reach decides.
    registration = WebhookRegistry(engine, POLICY).register(
        "https://ehr.example/a", SECRET, owner="ehr-a", reach=reach, care_unit=UNIT
    )

    assert registration.wants(frozenset(patients), frozenset(care_units), responsible) is wanted


def test_a_registration_without_an_owner_hears_of_nothing() -> None:
    legacy = Registration(
        id="00000000-0000-0000-0000-000000000000",
        url="https://ehr.example/a",
        patient_identifier=None,
        care_unit=None,
        description=None,
        created_at=datetime.now(UTC),
    )

    assert not legacy.wants(frozenset({PATIENT}), frozenset({UNIT}), UNIT)


@pytest.mark.parametrize(
    ("secret", "patient"),
    [("short", None), (SECRET, "no-bar"), (SECRET, "|value"), (SECRET, "system|")],
)
def test_weak_secrets_and_malformed_filters_are_refused(
    engine: Engine, secret: str, patient: str | None
) -> None:
    registry = WebhookRegistry(engine, POLICY)

    with pytest.raises(InvalidWebhookError):
        registry.register(
            "https://ehr.example/a",
            secret,
            owner="ehr-a",
            reach=EVERYONE,
            patient_identifier=patient,
        )
    assert registry.list() == []
