"""The service's activity: quiet only when no request is in flight, for as long as none was."""

from __future__ import annotations

from fhir_service.api.activity import Activity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_quiet_counts_from_the_last_answer_and_never_while_a_request_runs() -> None:
    clock = Clock()
    activity = Activity(clock)
    activity.started()
    activity.started()
    clock.now += 5
    activity.finished()
    while_one_runs = activity.quiet_for()
    activity.finished()
    clock.now += 2

    assert while_one_runs == 0.0
    assert activity.quiet_for() == 2.0
