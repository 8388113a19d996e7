"""A form token holds for its person, this hour and the next, under the key that made it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fhir_service.api.form_tokens import FormTokens

MADE = datetime(2026, 12, 5, 10, 59, 30, tzinfo=UTC)


def test_a_token_holds_for_its_person_until_the_end_of_the_next_hour() -> None:
    tokens = FormTokens(b"k" * 32)
    token = tokens.make("patient-1", at=MADE)

    assert tokens.holds(token, "patient-1", at=MADE)
    assert tokens.holds(token, "patient-1", at=MADE + timedelta(minutes=60))
    assert not tokens.holds(token, "patient-1", at=datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    assert not tokens.holds(token, "patient-1", at=MADE - timedelta(hours=1))


def test_a_token_is_worthless_to_anyone_else_and_under_any_other_key() -> None:
    tokens = FormTokens(b"k" * 32)
    token = tokens.make("patient-1", at=MADE)

    assert not tokens.holds(token, "patient-2", at=MADE)
    assert not FormTokens(b"j" * 32).holds(token, "patient-1", at=MADE)
    # Without a configured key each instance makes its own: replicas need the shared one.
    assert not FormTokens().holds(FormTokens().make("patient-1"), "patient-1")
    assert not tokens.holds("", "patient-1", at=MADE)
    assert not tokens.holds("å" * 64, "patient-1", at=MADE)
