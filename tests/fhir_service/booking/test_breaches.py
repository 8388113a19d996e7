"""A contract's agreed times against its care guarantee: only times that count, only when late."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fhir_service.booking.breaches import breaches, verdict_for
from fhir_service.contract import Contract
from tests.time_types import seed_catalogue

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
TYPES = seed_catalogue()
"""The units' time types the seed defines: the psychiatrist's follow-up counts towards the
specialist visit."""


def _contract(since_days: int | None, **psychiatrist: Any) -> Contract:
    """The elderly-psychiatry contract, waiting for a specialist visit since ``since_days``."""
    data = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
    unit = data["responsible_clinician"]["organization"]
    data["agreed_times"] = [
        {
            "key": "psychiatrist",
            "description": "Återbesök hos psykiatern",
            "organization": unit,
            "time_type": "psychiatrist-followup",
            **psychiatrist,
        },
        {
            "key": "nurse",
            "description": "Besök hos sjuksköterskan",
            "organization": unit,
            "time_type": "nurse-visit",
        },
    ]
    if since_days is not None:
        since = (NOW - timedelta(days=since_days)).isoformat()
        data["care_guarantee"] = {"jurisdiction": "SE", "step": "specialist-visit", "since": since}
    return Contract.model_validate(data)


def test_only_time_types_counting_towards_the_step_are_judged() -> None:
    contract = _contract(30)
    psychiatrist, nurse = contract.agreed_times

    judged = verdict_for(contract, psychiatrist, NOW + timedelta(days=100), TYPES)

    assert judged is not None
    assert judged.late is True
    assert judged.days_over == 40
    assert verdict_for(contract, nurse, NOW + timedelta(days=100), TYPES) is None
    assert verdict_for(_contract(None), psychiatrist, NOW + timedelta(days=100), TYPES) is None


def test_a_time_booked_past_the_deadline_breaks_the_guarantee() -> None:
    start = NOW + timedelta(days=70)
    booked = {
        "status": "booked",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
    }

    late = breaches(_contract(30, **booked), NOW, TYPES)
    in_time = breaches(_contract(10, **booked), NOW, TYPES)

    assert [(b.time.key, b.booked, b.verdict.days_over) for b in late] == [
        ("psychiatrist", True, 10)
    ]
    assert in_time == []


def test_a_time_not_booked_when_the_deadline_has_passed_breaks_it() -> None:
    assert [b.booked for b in breaches(_contract(91), NOW, TYPES)] == [False]
    assert breaches(_contract(89), NOW, TYPES) == []


def test_a_case_the_rules_cannot_judge_gets_no_verdict() -> None:
    contract = _contract(30)
    unjudgeable = contract.model_copy(
        update={
            "care_guarantee": contract.care_guarantee.model_copy(  # type: ignore[union-attr]
                update={"jurisdiction": "NO", "step": "specialist-visit"}
            )
        }
    )

    assert verdict_for(unjudgeable, contract.agreed_times[0], NOW, TYPES) is None
