"""The launcher's filter of HAPI's subscription pipeline (``UnwatchedChangesFilter``).

HAPI 8.8 queues every change to every resource for its subscription matcher (a row written with
the change, read back with the resource, matched and deleted), though the service's Subscriptions
name four types and most of what it writes is AuditEvents. The filter keeps out the changes to
types no active Subscription names. Run here through the filter class of the runnable launcher
jar, with HAPI's own classes: HAPI parses each Subscription's criteria and builds each change's
message as it does in the server. That a Subscription made while HAPI runs still gets its
changes is tested against the server, in ``test_subscriptions.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_service.cli.local_hapi import build
from fhir_service.sync.subscriptions import _CRITERIA as SERVICE_CRITERIA
from tests.support import launcher_class_path, run_java_source

HARNESS = Path(__file__).parents[1] / "data" / "hapi" / "UnwatchedChanges.java"
WRITTEN = ["CarePlan", "CareTeam", "Appointment", "HealthcareService", "AuditEvent", "Provenance"]
"""Types the service writes: the first four its Subscriptions watch."""


@pytest.fixture(scope="module")
def class_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The launcher's own classes and every library of the runnable jar (HAPI's and theirs)."""
    return launcher_class_path(tmp_path_factory.mktemp("launcher"), build())


def _queued(class_path: str, criteria: list[str], types: list[str]) -> dict[str, bool]:
    """Whether a change to each of ``types`` goes on to HAPI's matcher, with one active
    Subscription per criteria string."""
    said = {}
    for line in run_java_source(class_path, HARNESS, *criteria, "--", *types):
        verdict, _, resource_type = line.partition(" ")
        if verdict in {"queued", "skipped"}:  # HAPI's own logging shares the output
            said[resource_type] = verdict == "queued"
    assert sorted(said) == sorted(types), said
    return said


def test_only_the_types_the_services_subscriptions_name_are_queued(class_path: str) -> None:
    queued = _queued(class_path, list(SERVICE_CRITERIA.values()), [*WRITTEN, "Slot", "Basic"])

    assert queued == {
        "CarePlan": True,
        "CareTeam": True,
        "Appointment": True,
        "HealthcareService": True,
        "AuditEvent": False,
        "Provenance": False,
        "Slot": False,
        "Basic": False,
    }


def test_changes_to_subscriptions_are_always_queued(class_path: str) -> None:
    # HAPI activates, updates and ends Subscriptions through the same pipeline.
    assert _queued(class_path, [], ["Subscription", "AuditEvent"]) == {
        "Subscription": True,
        "AuditEvent": False,
    }


def test_each_type_of_a_multi_type_subscription_is_queued(class_path: str) -> None:
    assert _queued(class_path, ["[Appointment,Slot]"], ["Appointment", "Slot", "CarePlan"]) == {
        "Appointment": True,
        "Slot": True,
        "CarePlan": False,
    }


@pytest.mark.parametrize(
    "criteria",
    [
        pytest.param("[*]", id="every-type"),
        pytest.param("topic", id="topic-based"),
        pytest.param("[Appointment,Slot]?status=free", id="criteria-hapi-cannot-parse"),
    ],
)
def test_a_subscription_that_may_match_any_type_lets_every_change_through(
    class_path: str, criteria: str
) -> None:
    queued = _queued(class_path, ["CarePlan?identifier=x|", criteria], WRITTEN)

    assert all(queued.values()), queued
