"""The local development issuer's clients: who may get a token at its token endpoint.

A SMART backend-services client (an EHR, a booking platform) proves who it is with a JWT it
signs with its own private key (``private_key_jwt``); the issuer knows its public keys. Here the
registry is a file under the local issuer's directory, filled by ``fhir-service client add``:
each client has one role, and the care unit or patient its tokens act for. An identity
provider does this in production.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import jwt
from jwt import PyJWKSet

from fhir_service.security.roles import ROLE_SCOPES, Role
from fhir_service.security.scopes import Scope, parse_scopes

__all__ = [
    "ASSERTION_TYPE",
    "ClientAssertionError",
    "LocalClient",
    "grantable",
    "register",
    "registered",
    "verified_client",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]
_LONGEST_ASSERTION = 300
"""SMART backend services: an assertion expires at most five minutes after it is made."""


@dataclass(frozen=True, slots=True)
class LocalClient:
    """A registered client: its id, role, whom it acts for, and its public keys (a JWKS)."""

    client_id: str
    role: Role
    jwks: Mapping[str, Any]
    organization: str | None = None
    patient: str | None = None


class ClientAssertionError(Exception):
    """The client's assertion is refused; ``error`` is the OAuth error code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _registry(directory: Path) -> Path:
    return directory / "clients.json"


def register(directory: Path, client: LocalClient) -> None:
    """Add ``client`` to the registry under ``directory``, replacing one of the same id."""
    directory.mkdir(parents=True, exist_ok=True)
    path = _registry(directory)
    clients = json.loads(path.read_text("utf-8")) if path.exists() else {}
    clients[client.client_id] = {**asdict(client), "jwks": dict(client.jwks)}
    path.write_text(json.dumps(clients, indent=2, sort_keys=True) + "\n", "utf-8")


def registered(directory: Path, client_id: str) -> LocalClient | None:
    """The client registered as ``client_id``, if any."""
    path = _registry(directory)
    if not path.exists():
        return None
    entry = json.loads(path.read_text("utf-8")).get(client_id)
    if not isinstance(entry, dict):
        return None
    return LocalClient(
        client_id=client_id,
        role=cast(Role, entry["role"]),
        jwks=entry["jwks"],
        organization=entry.get("organization"),
        patient=entry.get("patient"),
    )


def verified_client(directory: Path, assertion: str, token_url: str) -> LocalClient:
    """The registered client whose signed ``assertion`` this is, made for ``token_url``.

    As SMART backend services check it: ``iss`` and ``sub`` are the client id, ``aud`` the
    token endpoint, a ``jti``, and an expiry at most five minutes ahead; signed by one of the
    client's keys.
    """
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise ClientAssertionError("invalid_client", "the client assertion is no JWT") from None
    client_id = claims.get("iss")
    client = registered(directory, client_id) if isinstance(client_id, str) else None
    if client is None or claims.get("sub") != client_id:
        raise ClientAssertionError("invalid_client", "no client is registered by that id")
    keys = [k for k in PyJWKSet.from_dict(dict(client.jwks)).keys if k.key_id == header.get("kid")]
    if not keys:
        raise ClientAssertionError("invalid_client", "the assertion names no key of the client")
    try:
        checked = jwt.decode(
            assertion,
            keys[0].key,
            algorithms=_ALGORITHMS,
            audience=token_url,
            options={"require": ["exp", "jti", "iss", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise ClientAssertionError("invalid_client", _said(exc)) from None
    if checked["exp"] - time.time() > _LONGEST_ASSERTION:
        raise ClientAssertionError("invalid_client", "the assertion lives over five minutes")
    return client


def _said(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "the assertion has expired"
    if isinstance(error, jwt.InvalidAudienceError):
        return "the assertion is not made for this token endpoint (aud)"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the assertion has no {error.claim}"
    return "the assertion's signature does not verify"


def grantable(client: LocalClient, asked: str) -> tuple[Scope, ...]:
    """The scopes of ``asked`` the client's role allows: each one its role holds, or a
    narrower one (fewer permissions, one type of a wildcard). Others are not granted."""
    held = parse_scopes(ROLE_SCOPES[client.role])
    return tuple(
        scope
        for scope in parse_scopes(asked.split())
        if any(
            h.context == scope.context
            and h.resource_type in ("*", scope.resource_type)
            and scope.permissions <= h.permissions
            for h in held
        )
    )
