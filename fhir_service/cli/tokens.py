"""``fhir-service token``: mint a bearer token of the local development issuer, to try the API;
``fhir-service client``: register a backend-services client that gets its tokens itself, at the
local issuer's token endpoint (``POST /auth/token``).

Only when ``FHIR_SERVICE_AUTH_LOCAL_ISSUER`` is on, which production settings refuse. The key is
the one a service with the same data directory accepts tokens of.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from jwt import PyJWKSet
from jwt.exceptions import PyJWKSetError

from fhir_service.security.access import AccessDeniedError, claimed_identifier
from fhir_service.security.dev_keys import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    local_issuer_key,
    mint_token,
)
from fhir_service.security.local_clients import LocalClient, register
from fhir_service.security.roles import Role, claims_for
from fhir_service.settings import Settings

__all__ = ["mint", "register_client"]

_NEEDS_ORGANIZATION: frozenset[Role] = frozenset({"clinician", "ehr"})


def mint(
    settings: Settings,
    role: Role,
    *,
    subject: str | None,
    organization: str | None,
    patient: str | None,
    lifetime_seconds: int,
    fhir_user: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print a token for ``role``; 0, or 2 after saying what is missing or not allowed."""
    if not settings.auth_local_issuer:
        print(
            "error: tokens are minted only for local development; "
            "set FHIR_SERVICE_AUTH_LOCAL_ISSUER=true (never in production)",
            file=err,
        )
        return 2
    problem = _check(role, organization, patient)
    if role == "relative" and not (fhir_user or "").startswith("RelatedPerson/"):
        problem = problem or (
            "a relative's token names their RelatedPerson: add --fhir-user RelatedPerson/<id> "
            "(POST /consents answers it as fhir_user)"
        )
    if problem is not None:
        print(f"error: {problem}", file=err)
        return 2
    key, _ = local_issuer_key(settings.local_issuer_dir)
    claims = claims_for(
        role,
        issuer=LOCAL_ISSUER,
        audience=LOCAL_AUDIENCE,
        subject=subject or f"local-{role}",
        organization=organization,
        patient=patient,
        fhir_user=fhir_user,
        lifetime_seconds=lifetime_seconds,
    )
    print(mint_token(key, claims), file=out)
    return 0


def register_client(
    settings: Settings,
    client_id: str,
    role: Role,
    *,
    jwks: Path,
    organization: str | None,
    patient: str | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Register a client of the local issuer; 0, or 2 after saying what is missing."""
    if not settings.auth_local_issuer:
        print("error: set FHIR_SERVICE_AUTH_LOCAL_ISSUER=true (never in production)", file=err)
        return 2
    problem = _check(role, organization, patient)
    try:
        keys = json.loads(jwks.read_text("utf-8"))
        PyJWKSet.from_dict(keys)
    except (OSError, ValueError, PyJWKSetError):
        problem = problem or f"--jwks {jwks}: not a readable JWKS file"
    if problem is not None:
        print(f"error: {problem}", file=err)
        return 2
    client = LocalClient(client_id, role, keys, organization=organization, patient=patient)
    register(settings.local_issuer_dir, client)
    print(f"registered {client_id} ({role}); token endpoint: POST /auth/token", file=out)
    return 0


def _check(role: Role, organization: str | None, patient: str | None) -> str | None:
    if role in _NEEDS_ORGANIZATION and organization is None:
        return f"a {role} token acts for a care unit: add --organization hsa-id|<HSA-id>"
    if role in ("patient", "relative") and patient is None:
        return f"a {role} token names its patient: add --patient personnummer|<number>"
    try:
        if organization is not None and claimed_identifier(organization, patient=False) is None:
            return "--organization must be kind|value, e.g. hsa-id|SE2321000016-15QT"
        if patient is not None and claimed_identifier(patient, patient=True) is None:
            return "--patient must be kind|value, e.g. personnummer|19121212-1212"
    except AccessDeniedError:
        return "--organization or --patient is not a valid identifier of its kind"
    return None
