"""What a patient may still do online with a booked time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fhir_service.booking.online import online_changes
from fhir_service.contract import AgreedTime, Organization

UNIT = Organization.model_validate(
    {
        "identifier": {"kind": "hsa-id", "value": "SE2321000065-1254"},
        "name": "Äldrepsykiatriska mottagningen Växjö",
        "kind": "care-unit",
    }
)
START = datetime(2031, 5, 5, 9, 0, tzinfo=UTC)


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

    nurse = online_changes(_time("nurse-visit"), before)
    psychiatrist = online_changes(_time("psychiatrist-followup"), before)

    assert nurse is not None
    assert (nurse.cancel, nurse.rebook, nurse.until) == (True, True, START - timedelta(hours=24))
    assert psychiatrist is not None
    assert (psychiatrist.cancel, psychiatrist.rebook) == (True, False)
    assert online_changes(_time("nurse-visit"), START - timedelta(hours=23)) is None
    # The psychiatrist's times have a 48-hour cut-off, the nurse's 24.
    assert online_changes(_time("psychiatrist-followup"), START - timedelta(hours=30)) is None
    assert online_changes(_time(None), before) is None
    assert online_changes(_time("nurse-visit", "fulfilled"), before) is None
