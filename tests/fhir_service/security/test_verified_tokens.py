"""Verified tokens remembered: until expiry and never past the ttl, bounded, refusals never."""

from __future__ import annotations

from fhir_service.security.verified_tokens import VerifiedTokens


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_remembered_until_it_expires() -> None:
    clock = Clock()
    tokens: VerifiedTokens[str] = VerifiedTokens(ttl_seconds=60, clock=clock)
    tokens.remember("token-a", "alice", expires_at=clock.now + 30)

    clock.now += 29
    before = tokens.get("token-a")
    clock.now += 1
    after = tokens.get("token-a")

    assert before == "alice"
    assert after is None


def test_a_long_lived_token_is_checked_again_after_the_ttl() -> None:
    clock = Clock()
    tokens: VerifiedTokens[str] = VerifiedTokens(ttl_seconds=60, clock=clock)
    tokens.remember("token-a", "alice", expires_at=clock.now + 3600)

    clock.now += 59
    before = tokens.get("token-a")
    clock.now += 1

    assert before == "alice"
    assert tokens.get("token-a") is None


def test_the_least_recently_verified_token_goes_first() -> None:
    tokens: VerifiedTokens[str] = VerifiedTokens(capacity=2, clock=Clock())
    for name in ("a", "b", "c"):
        tokens.remember(f"token-{name}", name, expires_at=2_000_000.0)

    assert tokens.get("token-a") is None
    assert (tokens.get("token-b"), tokens.get("token-c")) == ("b", "c")


def test_an_unknown_token_is_not_remembered() -> None:
    tokens: VerifiedTokens[str] = VerifiedTokens(clock=Clock())
    tokens.remember("token-a", "alice", expires_at=2_000_000.0)

    assert tokens.get("token-a-but-longer") is None
