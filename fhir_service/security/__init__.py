"""Token validation, SMART scopes and patient compartments."""

from fhir_service.security.access import (
    Access,
    AccessDeniedError,
    Compartment,
    Denial,
    Leave,
    Requirement,
    claimed_identifier,
    decide,
    identifier_named,
)
from fhir_service.security.dev_keys import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    local_issuer_key,
    mint_token,
)
from fhir_service.security.local_clients import (
    ASSERTION_TYPE,
    ClientAssertionError,
    grantable,
    verified_client,
)
from fhir_service.security.roles import claims_for
from fhir_service.security.scopes import Permission
from fhir_service.security.smart import LOCAL_JWKS_PATH, LOCAL_TOKEN_PATH, endpoints, oauth_uris
from fhir_service.security.tokens import (
    InvalidTokenError,
    Principal,
    SigningKeysUnavailableError,
    TokenValidator,
)

__all__ = [
    "ASSERTION_TYPE",
    "LOCAL_AUDIENCE",
    "LOCAL_ISSUER",
    "LOCAL_JWKS_PATH",
    "LOCAL_TOKEN_PATH",
    "Access",
    "AccessDeniedError",
    "ClientAssertionError",
    "Compartment",
    "Denial",
    "InvalidTokenError",
    "Leave",
    "Permission",
    "Principal",
    "Requirement",
    "SigningKeysUnavailableError",
    "TokenValidator",
    "claimed_identifier",
    "claims_for",
    "decide",
    "endpoints",
    "grantable",
    "identifier_named",
    "local_issuer_key",
    "mint_token",
    "oauth_uris",
    "verified_client",
]
