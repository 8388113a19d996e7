"""OAuth2 bearer tokens: JWTs signed RS256 or ES256, checked against configured keys.

A token is checked in this order, and the first failure decides the answer: it must parse, name
an allowed algorithm and a known key of that algorithm, carry a good signature, and then have the
expected issuer and audience, an expiry that has not passed and no ``nbf`` in the future (both
with a small clock-skew allowance), and a subject. What it proves becomes a `Principal`.

Errors::

    InvalidTokenError            the token is refused (401); ``reason`` is a fixed, safe `Rejection`
    SigningKeysUnavailableError  the key set could not be read or fetched (503); nothing was judged

A rejection's reason quotes nothing from the token, so it may be shown to the client.
`TokenValidator.validate` can block on a JWKS fetch: call it from a sync dependency (FastAPI runs
those in its thread pool) or through ``anyio.to_thread``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from fhir_service.security.dev_keys import LOCAL_AUDIENCE, LOCAL_ISSUER, local_issuer_key
from fhir_service.security.verified_tokens import VerifiedTokens

if TYPE_CHECKING:
    from fhir_service.settings import Settings

__all__ = [
    "ALGORITHMS",
    "InvalidTokenError",
    "JwksFile",
    "JwksUrl",
    "Principal",
    "Rejection",
    "SigningKeys",
    "SigningKeysUnavailableError",
    "TokenValidator",
]

ALGORITHMS = frozenset({"RS256", "ES256"})


class Rejection(StrEnum):
    """Why a token was refused; the value is safe for ``WWW-Authenticate: error_description``."""

    MALFORMED = "malformed token"
    UNSUPPORTED_ALGORITHM = "unsupported signing algorithm"
    MISSING_KEY_ID = "token names no signing key"
    UNKNOWN_KEY = "unknown signing key"
    KEY_ALGORITHM_MISMATCH = "signing key is for another algorithm"
    BAD_SIGNATURE = "bad signature"
    EXPIRED = "token has expired"
    NOT_YET_VALID = "token is not yet valid"
    WRONG_ISSUER = "wrong issuer"
    WRONG_AUDIENCE = "wrong audience"
    MISSING_EXPIRY = "token has no expiry"
    MISSING_SUBJECT = "token has no subject"
    MALFORMED_CLAIMS = "malformed claims"


class InvalidTokenError(Exception):
    """The bearer token is refused; ``reason`` says why without quoting the token."""

    def __init__(self, reason: Rejection) -> None:
        super().__init__(reason.value)
        self.reason = reason


class SigningKeysUnavailableError(Exception):
    """The signing keys could not be read or fetched, so no token can be judged now."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for, and what it grants; never the raw claims.

    ``patient`` is a FHIR Patient id or an identifier, ``organization`` the clinician's care
    unit, each identifier as ``kind|value`` (``personnummer|...``, ``hsa-id|...``) or FHIR
    ``system|value``; both are kept exactly as issued, and `security.access` reads them.
    """

    subject: str
    client_id: str | None
    scopes: frozenset[str]
    patient: str | None = None
    fhir_user: str | None = None
    organization: str | None = None


class SigningKeys(Protocol):
    """Where the public keys come from."""

    def key(self, kid: str) -> PyJWK | None:
        """The signing key named ``kid``, or None if there is none."""
        ...


class JwksFile:
    """Signing keys from a JWKS file, read once."""

    def __init__(self, path: Path) -> None:
        """Read ``path``; a missing or unusable file raises `SigningKeysUnavailableError`."""
        try:
            key_set = PyJWKSet.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise SigningKeysUnavailableError(f"cannot read the JWKS file {path}") from exc
        self._keys = {k.key_id: k for k in key_set.keys if _is_signing_key(k)}

    def key(self, kid: str) -> PyJWK | None:
        """The signing key named ``kid``, or None if the file has none."""
        return self._keys.get(kid)


class JwksUrl:
    """Signing keys fetched from a JWKS URL and cached.

    The set is fetched again when the cache is older than ``cache_seconds``, and when a token
    names a key the cached set lacks (a key rotation), but such forced refreshes happen at most
    once per ``refresh_cooldown_seconds``: tokens with made-up key ids cannot make us hammer the
    issuer.
    """

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        refresh_cooldown_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the client; nothing is fetched until the first token arrives."""
        # PyJWKClient's own cooldown counts from any fetch; ours counts forced refreshes only and
        # reads an injectable clock, so the two limits are independent and testable.
        self._client = PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=cache_seconds,
            timeout=timeout_seconds,
            cooldown_duration=0,
        )
        self._cooldown = refresh_cooldown_seconds
        self._clock = clock
        self._last_forced_refresh: float | None = None
        self._lock = threading.Lock()

    def key(self, kid: str) -> PyJWK | None:
        """The signing key named ``kid``, refreshing the set once if allowed; None if absent."""
        # One lock: concurrent tokens with a new kid cause one fetch, not one each.
        with self._lock:
            found = self._find(kid, refresh=False)
            if found is None and self._may_force_refresh():
                self._last_forced_refresh = self._clock()
                found = self._find(kid, refresh=True)
            return found

    def _may_force_refresh(self) -> bool:
        last = self._last_forced_refresh
        return last is None or self._clock() - last >= self._cooldown

    def _find(self, kid: str, *, refresh: bool) -> PyJWK | None:
        try:
            keys = self._client.get_jwk_set(refresh=refresh).keys
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            raise SigningKeysUnavailableError("cannot fetch the JWKS") from exc
        return next((k for k in keys if k.key_id == kid and _is_signing_key(k)), None)


def _is_signing_key(key: PyJWK) -> bool:
    return key.public_key_use in ("sig", None)


class TokenValidator:
    """Turns a bearer token into a `Principal`, or refuses it with `InvalidTokenError`."""

    def __init__(
        self,
        keys: SigningKeys,
        *,
        issuer: str,
        audience: str,
        clock_skew_seconds: float = 60.0,
    ) -> None:
        """Accept tokens from ``issuer`` for ``audience`` signed by one of ``keys``."""
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = clock_skew_seconds
        self._verified: VerifiedTokens[Principal] = VerifiedTokens()

    @property
    def issuer(self) -> str:
        """The issuer whose tokens are accepted; a token's ``sub`` is unique within it."""
        return self._issuer

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenValidator:
        """The validator the ``auth_*`` settings describe; ValueError if they are incomplete.

        With ``auth_local_issuer`` on (development only), tokens of the local issuer that
        ``fhir-service token`` mints are the ones accepted.
        """
        if settings.auth_local_issuer:
            _, jwks = local_issuer_key(settings.local_issuer_dir)
            return cls(JwksFile(jwks), issuer=LOCAL_ISSUER, audience=LOCAL_AUDIENCE)
        issuer, audience = settings.auth_issuer, settings.auth_audience
        if not issuer or not audience:
            raise ValueError(_INCOMPLETE_SETTINGS)
        url, path = settings.auth_jwks_url, settings.auth_jwks_file
        if url is not None and path is not None:
            raise ValueError(
                "set one of FHIR_SERVICE_AUTH_JWKS_URL and FHIR_SERVICE_AUTH_JWKS_FILE, not both"
            )
        keys: SigningKeys
        if url is not None:
            keys = JwksUrl(str(url))
        elif path is not None:
            keys = JwksFile(path)
        else:
            raise ValueError(_INCOMPLETE_SETTINGS)
        return cls(
            keys,
            issuer=issuer,
            audience=audience,
            clock_skew_seconds=settings.auth_clock_skew_seconds,
        )

    def remembered(self, token: str) -> Principal | None:
        """The principal of ``token`` if it was validated moments ago; cheap, never blocks."""
        return self._verified.get(token)

    def validate(self, token: str) -> Principal:
        """The principal ``token`` speaks for.

        Raises `InvalidTokenError` if the token is refused, `SigningKeysUnavailableError` if the
        keys cannot be had right now.
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            return remembered
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError(Rejection.MALFORMED) from None
        algorithm = header.get("alg")
        # Checked before any key is touched: this is what refuses `none` and HS256 forged with a
        # public key, whatever the key set holds.
        if algorithm not in ALGORITHMS:
            raise InvalidTokenError(Rejection.UNSUPPORTED_ALGORITHM)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError(Rejection.MISSING_KEY_ID)
        key = self._keys.key(kid)
        if key is None:
            raise InvalidTokenError(Rejection.UNKNOWN_KEY)
        if key.algorithm_name != algorithm:
            raise InvalidTokenError(Rejection.KEY_ALGORITHM_MISMATCH)
        claims = self._verified_claims(token, key, algorithm)
        principal = _principal(claims)
        # Remembered until it expires exactly: the leeway is for clocks, not for reuse.
        self._verified.remember(token, principal, float(claims["exp"]))
        return principal

    def _verified_claims(self, token: str, key: PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(_MISSING_CLAIM[exc.claim]) from None
        except jwt.PyJWTError as exc:
            # `from None`: PyJWT's messages may quote the token, and nothing of it may travel on.
            raise InvalidTokenError(_rejection(exc)) from None


_INCOMPLETE_SETTINGS = (
    "token validation needs FHIR_SERVICE_AUTH_ISSUER, FHIR_SERVICE_AUTH_AUDIENCE and "
    "FHIR_SERVICE_AUTH_JWKS_URL or FHIR_SERVICE_AUTH_JWKS_FILE "
    "(or, for local development, FHIR_SERVICE_AUTH_LOCAL_ISSUER=true)"
)

_MISSING_CLAIM = {
    "exp": Rejection.MISSING_EXPIRY,
    "sub": Rejection.MISSING_SUBJECT,
    "iss": Rejection.WRONG_ISSUER,
    "aud": Rejection.WRONG_AUDIENCE,
}

# Subclasses first: ExpiredSignatureError, ImmatureSignatureError and the issuer and audience
# errors all derive from PyJWT's InvalidTokenError, and DecodeError from it too.
_REJECTIONS: tuple[tuple[type[jwt.PyJWTError], Rejection], ...] = (
    (jwt.InvalidSignatureError, Rejection.BAD_SIGNATURE),
    (jwt.ExpiredSignatureError, Rejection.EXPIRED),
    (jwt.ImmatureSignatureError, Rejection.NOT_YET_VALID),
    (jwt.InvalidIssuerError, Rejection.WRONG_ISSUER),
    (jwt.InvalidAudienceError, Rejection.WRONG_AUDIENCE),
    (jwt.DecodeError, Rejection.MALFORMED),
)


def _rejection(exc: jwt.PyJWTError) -> Rejection:
    return next((r for kind, r in _REJECTIONS if isinstance(exc, kind)), Rejection.MALFORMED_CLAIMS)


def _principal(claims: Mapping[str, Any]) -> Principal:
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise InvalidTokenError(Rejection.MISSING_SUBJECT)
    return Principal(
        subject=subject,
        client_id=_optional_text(claims, "client_id") or _optional_text(claims, "azp"),
        scopes=_scopes(claims),
        patient=_optional_text(claims, "patient"),
        fhir_user=_optional_text(claims, "fhirUser"),
        organization=_optional_text(claims, "organization"),
    )


def _optional_text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None or (isinstance(value, str) and value):
        return value
    raise InvalidTokenError(Rejection.MALFORMED_CLAIMS)


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """SMART's space-separated ``scope``, and ``scp`` as some issuers send it: a list."""
    scope = claims.get("scope", "")
    scp = claims.get("scp", [])
    if not isinstance(scope, str) or not isinstance(scp, list):
        raise InvalidTokenError(Rejection.MALFORMED_CLAIMS)
    if not all(isinstance(s, str) for s in scp):
        raise InvalidTokenError(Rejection.MALFORMED_CLAIMS)
    return frozenset(scope.split()) | frozenset(s for s in scp if s)
