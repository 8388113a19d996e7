"""What a patient may still do online with a booked time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fhir_service.booking.online import online_changes, rules_of
from fhir_service.contract import AgreedTime, OnlineRules, Organization
from tests.time_types import seed_catalogue

UNIT = Organization.model_validate(
    {
        "identifier": {"kind": "hsa-id", "value": "SE2321000065-1254"},
        "name": "Äldrepsykiatriska mottagningen Växjö",
        "kind": "care-unit",
    }
)
START = datetime(2031, 5, 5, 9, 0, tzinfo=UTC)
TYPES = seed_catalogue()


def _time(time_type: str | None, status: str = "booked") -> AgreedTime:
    return AgreedTime(
        key="t",
        description="Tid",
        status=status,
        start=START,
        end=START + timedelta(minutes=30),
        organization=UNIT,
        time_type=time_type,
    )


def test_the_clinics_rules_and_cut_off_decide() -> None:
    before = START - timedelta(days=3)

    nurse = online_changes(_time("nurse-visit"), before, rules_of(_time("nurse-visit"), TYPES))
    psychiatrist = online_changes(
        _time("psychiatrist-followup"), before, rules_of(_time("psychiatrist-followup"), TYPES)
    )

    assert nurse is not None
    assert (nurse.cancel, nurse.rebook, nurse.until) == (True, True, START - timedelta(hours=24))
    assert psychiatrist is not None
    assert (psychiatrist.cancel, psychiatrist.rebook) == (True, False)
    assert (
        online_changes(
            _time("nurse-visit"), START - timedelta(hours=23), rules_of(_time("nurse-visit"), TYPES)
        )
        is None
    )
    # The psychiatrist's times have a 48-hour cut-off, the nurse's 24.
    assert (
        online_changes(
            _time("psychiatrist-followup"),
            START - timedelta(hours=30),
            rules_of(_time("psychiatrist-followup"), TYPES),
        )
        is None
    )
    assert online_changes(_time(None), before, rules_of(_time(None), TYPES)) is None
    assert (
        online_changes(
            _time("nurse-visit", "fulfilled"),
            before,
            rules_of(_time("nurse-visit", "fulfilled"), TYPES),
        )
        is None
    )


def test_a_time_keeps_the_rules_it_was_booked_under() -> None:
    # Booked when nurse visits could be changed online until 72 hours before; the type has
    # been changed since (24 hours in the seed): the time keeps its own.
    rules = OnlineRules(cancel=True, rebook=False, cancel_cutoff_hours=72)
    booked = _time("nurse-visit").model_copy(update={"online_rules": rules})

    assert rules_of(booked, TYPES) == rules
    assert online_changes(booked, START - timedelta(hours=48), rules_of(booked, TYPES)) is None
    kept = online_changes(booked, START - timedelta(hours=73), rules_of(booked, TYPES))
    assert kept is not None
    assert (kept.cancel, kept.rebook) == (True, False)
    # A time booked in the clinic's own system has no rules of its own: its type's now.
    assert rules_of(_time("nurse-visit"), TYPES) == OnlineRules(
        cancel=True, rebook=True, cancel_cutoff_hours=24
    )
