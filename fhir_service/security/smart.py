"""SMART App Launch v2 discovery: where a client gets a token, and what it may ask for.

Served as ``/fhir/.well-known/smart-configuration`` and, for clients that read the
CapabilityStatement instead, as the ``oauth-uris`` extension of its ``rest.security``. The
endpoints are the identity provider's (settings ``auth_token_url``, ``auth_authorize_url``,
``auth_jwks_url``); with the local development issuer, its own token endpoint and keys here.
"""

from __future__ import annotations

from typing import Any

from fhir_service.security.dev_keys import LOCAL_ISSUER
from fhir_service.security.roles import ROLE_SCOPES
from fhir_service.settings import Settings

__all__ = ["LOCAL_JWKS_PATH", "LOCAL_TOKEN_PATH", "Endpoints", "endpoints", "oauth_uris"]

LOCAL_TOKEN_PATH = "/auth/token"  # noqa: S105 (a path, not a secret)
LOCAL_JWKS_PATH = "/auth/jwks"
_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

Endpoints = dict[str, Any]


def endpoints(settings: Settings, service_base: str) -> Endpoints:
    """The SMART configuration document of a service reached at ``service_base``."""
    local = settings.auth_local_issuer
    token = str(settings.auth_token_url or "") or (
        f"{service_base}{LOCAL_TOKEN_PATH}" if local else None
    )
    jwks = str(settings.auth_jwks_url or "") or (
        f"{service_base}{LOCAL_JWKS_PATH}" if local else None
    )
    authorize = str(settings.auth_authorize_url or "") or None
    grants = ["client_credentials"]
    capabilities = ["client-confidential-asymmetric", "permission-v1", "permission-v2"]
    if authorize is not None:
        grants.insert(0, "authorization_code")
        capabilities += ["launch-standalone", "context-standalone-patient", "client-public"]
    document: Endpoints = {
        "issuer": settings.auth_issuer or (LOCAL_ISSUER if local else None),
        "jwks_uri": jwks,
        "authorization_endpoint": authorize,
        "token_endpoint": token,
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES384", "RS384", "ES256", "RS256"],
        "scopes_supported": sorted({s for scopes in ROLE_SCOPES.values() for s in scopes}),
        "response_types_supported": ["code"] if authorize is not None else [],
        "capabilities": capabilities,
        "code_challenge_methods_supported": ["S256"],
    }
    return {k: v for k, v in document.items() if v is not None}


def oauth_uris(document: Endpoints) -> dict[str, Any] | None:
    """The CapabilityStatement's ``oauth-uris`` extension for ``document``; None without a
    token endpoint (no issuer said where tokens come from)."""
    named = [("token", "token_endpoint"), ("authorize", "authorization_endpoint")]
    uris = [{"url": url, "valueUri": document[key]} for url, key in named if key in document]
    if "token_endpoint" not in document:
        return None
    return {"url": _OAUTH_URIS, "extension": uris}
