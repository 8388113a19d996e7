"""SMART discovery names the identity provider's endpoints, or the local issuer's."""

from __future__ import annotations

from pathlib import Path

from fhir_service.security.smart import endpoints, oauth_uris
from fhir_service.settings import Settings

SERVICE = "https://kontrakt.region.example"


def test_an_identity_providers_endpoints_are_named_with_what_they_support(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        auth_issuer="https://idp.region.example",
        auth_jwks_url="https://idp.region.example/jwks",
        auth_token_url="https://idp.region.example/token",
        auth_authorize_url="https://idp.region.example/authorize",
    )

    document = endpoints(settings, SERVICE)

    assert document["token_endpoint"] == "https://idp.region.example/token"
    assert document["authorization_endpoint"] == "https://idp.region.example/authorize"
    assert document["jwks_uri"] == "https://idp.region.example/jwks"
    assert document["grant_types_supported"] == ["authorization_code", "client_credentials"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "permission-v2" in document["capabilities"]
    assert "system/CarePlan.cruds" in document["scopes_supported"]
    extension = oauth_uris(document)
    assert extension is not None
    assert {e["url"]: e["valueUri"] for e in extension["extension"]} == {
        "token": "https://idp.region.example/token",
        "authorize": "https://idp.region.example/authorize",
    }


def test_the_local_issuer_names_its_own_token_endpoint_and_keys(tmp_path: Path) -> None:
    document = endpoints(Settings(data_dir=tmp_path, auth_local_issuer=True), SERVICE)

    assert document["token_endpoint"] == f"{SERVICE}/auth/token"
    assert document["jwks_uri"] == f"{SERVICE}/auth/jwks"
    assert "authorization_endpoint" not in document
    assert document["grant_types_supported"] == ["client_credentials"]


def test_without_a_token_endpoint_no_oauth_uris_are_claimed(tmp_path: Path) -> None:
    document = endpoints(Settings(data_dir=tmp_path, auth_issuer="https://idp"), SERVICE)

    assert "token_endpoint" not in document
    assert oauth_uris(document) is None
