"""A contract's own edits leave times booked in published slots to the booking facade."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import Contract
from fhir_service.contract.bookings import changed_bookings

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
START = datetime(2031, 5, 5, 9, 0, tzinfo=UTC)


def _with(*times: dict[str, Any]) -> Contract:
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    unit = data["responsible_clinician"]["organization"]
    data["agreed_times"] = [{"description": "Tid", "organization": unit, **t} for t in times]
    return Contract.model_validate(data)


def _booked(key: str = "t", start: datetime = START, **changes: Any) -> dict[str, Any]:
    return {
        "key": key,
        "status": "booked",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
        "slot": "42",
        **changes,
    }


def test_moving_unbooking_or_dropping_a_slot_booked_time_is_a_change() -> None:
    current = _with(_booked(), _booked("u", slot=None))
    moved = _with(_booked(start=START + timedelta(hours=1)), _booked("u", slot=None))
    unbooked = _with({"key": "t", "status": "proposed"}, _booked("u", slot=None))
    dropped = _with(_booked("u", slot=None))
    happened = _with(_booked(status="fulfilled"), _booked("u", slot=None))

    assert changed_bookings(current, current) == []
    assert changed_bookings(current, happened) == []
    assert changed_bookings(current, moved) == ["t"]
    assert changed_bookings(current, unbooked) == ["t"]
    assert changed_bookings(current, dropped) == ["t"]


def test_a_time_booked_without_a_slot_is_the_contracts_own() -> None:
    assert changed_bookings(_with(_booked(slot=None)), _with()) == []


def _held(**changes: Any) -> dict[str, Any]:
    hold = {"until": (START - timedelta(days=1)).isoformat(), "holder": "idp|platform"}
    return _booked(**{"status": "pending", "hold": hold, **changes})


def test_a_held_time_is_neither_made_released_booked_nor_moved_by_an_edit() -> None:
    proposed = _with({"key": "t", "status": "proposed"})
    held = _with(_held())
    other_holder = _with(
        _held(hold={"until": START.isoformat(), "holder": "idp|someone-else"}),
    )
    booked = _with(_booked())

    assert changed_bookings(held, held) == []
    assert changed_bookings(proposed, held) == ["t"]  # an edit holds nothing
    assert changed_bookings(None, held) == ["t"]  # nor does a new contract
    assert changed_bookings(held, proposed) == ["t"]
    assert changed_bookings(held, booked) == ["t"]
    assert changed_bookings(held, other_holder) == ["t"]
    assert changed_bookings(None, proposed) == []


def test_a_pending_time_has_a_hold_and_only_it_has_one() -> None:
    with pytest.raises(ValueError, match="pending time has a hold"):
        _with(_booked(status="pending"))
    with pytest.raises(ValueError, match="pending time has a hold"):
        _with({**_held(), "status": "booked"})
