"""Tokens that prove a form on the patient's page came from that page, for that person.

A portal's backend adds the patient's bearer token to every request it passes on, as a browser
adds a cookie: a page elsewhere that makes the patient's browser post a form would post it with
their authority. Each form of the page therefore carries a token only this service can make: an
HMAC of the person's subject and the hour it was made, under a key every replica shares
(``FHIR_SERVICE_FORM_SECRET``). It holds for the hour it was made in and the next, so a form
left open for a while still goes through, and a form of one person is worthless to another.

>>> tokens = FormTokens(b"k" * 32)
>>> made = tokens.make("patient-1", at=datetime(2026, 12, 5, 10, 59, tzinfo=UTC))
>>> tokens.holds(made, "patient-1", at=datetime(2026, 12, 5, 11, 30, tzinfo=UTC))
True
>>> tokens.holds(made, "patient-2", at=datetime(2026, 12, 5, 11, 30, tzinfo=UTC))
False
>>> tokens.holds(made, "patient-1", at=datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
False
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime

__all__ = ["FormTokens"]

_HOUR = 3600


class FormTokens:
    """Makes and checks the page's form tokens under one key."""

    def __init__(self, key: bytes | None = None) -> None:
        # Without a configured key only this process can check what it made: one replica.
        self._key = key if key is not None else secrets.token_bytes(32)

    def make(self, subject: str, *, at: datetime | None = None) -> str:
        """A token for forms ``subject`` (the token's ``sub``) sends from now on."""
        return self._token(subject, _hour(at))

    def holds(self, token: str, subject: str, *, at: datetime | None = None) -> bool:
        """Whether ``token`` was made for ``subject`` this hour or the last."""
        hour = _hour(at)
        return any(
            hmac.compare_digest(token.encode(), self._token(subject, made).encode())
            for made in (hour, hour - 1)
        )

    def _token(self, subject: str, hour: int) -> str:
        message = f"patient-page-form|{hour}|{subject}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _hour(at: datetime | None) -> int:
    return int((at or datetime.now(UTC)).timestamp()) // _HOUR
