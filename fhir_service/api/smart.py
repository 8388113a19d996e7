"""SMART discovery, and the local development issuer's token endpoint and keys.

``/fhir/.well-known/smart-configuration`` tells a SMART client where to get a token and what it
may ask for (``security/smart.py``). With ``FHIR_SERVICE_AUTH_LOCAL_ISSUER`` the service is its
own issuer for local development: ``POST /auth/token`` gives a backend-services client that
proves itself with a signed assertion (``security/local_clients.py``) a token of its role, and
``/auth/jwks`` publishes the keys tokens are signed with. Without the local issuer they are 404.
OAuth and SMART define these answers, not our OpenAPI document, which leaves them out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from fhir_service.api.deps import SettingsDep
from fhir_service.security import (
    ASSERTION_TYPE,
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    LOCAL_JWKS_PATH,
    LOCAL_TOKEN_PATH,
    ClientAssertionError,
    claims_for,
    endpoints,
    grantable,
    local_issuer_key,
    mint_token,
    verified_client,
)

__all__ = ["router"]

router = APIRouter(tags=["smart"])

_TOKEN_LIFETIME = 300
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _service_base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get(
    "/fhir/.well-known/smart-configuration", name="smart_configuration", include_in_schema=False
)
async def smart_configuration(request: Request, settings: SettingsDep) -> JSONResponse:
    """Where a SMART client gets a token, with which grants, and the scopes it may ask for."""
    return JSONResponse(endpoints(settings, _service_base(request)))


@router.get(LOCAL_JWKS_PATH, name="local_issuer_keys", include_in_schema=False)
async def local_issuer_keys(settings: SettingsDep) -> Response:
    """The local development issuer's public keys (404 without the local issuer)."""
    if not settings.auth_local_issuer:
        raise HTTPException(status_code=404)
    _, jwks = local_issuer_key(settings.local_issuer_dir)
    return Response(jwks.read_bytes(), media_type="application/json")


@router.post(LOCAL_TOKEN_PATH, name="local_issuer_token", include_in_schema=False)
async def local_issuer_token(request: Request, settings: SettingsDep) -> JSONResponse:
    """A token for a registered backend-services client (``client_credentials`` with a
    ``private_key_jwt`` assertion), of its role and narrowed to the scopes asked for."""
    if not settings.auth_local_issuer:
        raise HTTPException(status_code=404)
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    if form.get("grant_type") != "client_credentials":
        return _refused("unsupported_grant_type", "grant_type must be client_credentials")
    if form.get("client_assertion_type") != ASSERTION_TYPE or "client_assertion" not in form:
        return _refused(
            "invalid_client", f"authenticate with client_assertion_type {ASSERTION_TYPE}"
        )
    token_url = f"{_service_base(request)}{LOCAL_TOKEN_PATH}"
    try:
        client = verified_client(settings.local_issuer_dir, form["client_assertion"], token_url)
    except ClientAssertionError as exc:
        return _refused(exc.error, exc.description, status=401)
    scopes = grantable(client, form.get("scope", ""))
    if not scopes:
        return _refused("invalid_scope", "none of the scopes asked for is the client's role's")
    key, _ = local_issuer_key(settings.local_issuer_dir)
    claims: dict[str, Any] = claims_for(
        client.role,
        issuer=LOCAL_ISSUER,
        audience=LOCAL_AUDIENCE,
        subject=client.client_id,
        organization=client.organization,
        patient=client.patient,
        client_id=client.client_id,
        lifetime_seconds=_TOKEN_LIFETIME,
    )
    granted = " ".join(str(s) for s in scopes)
    answer = {
        "access_token": mint_token(key, {**claims, "scope": granted}),
        "token_type": "bearer",
        "expires_in": _TOKEN_LIFETIME,
        "scope": granted,
    }
    return JSONResponse(answer, headers=_NO_STORE)


def _refused(error: str, description: str, status: int = 400) -> JSONResponse:
    # RFC 6749 §5.2: an error code, and a description for the developer.
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers=_NO_STORE)
