"""A token issuer of the tests' own: a key pair, its JWKS file, and tokens for every role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhir_service.security.dev_keys import generate_key, mint_token, write_jwks
from fhir_service.security.roles import Role, claims_for

__all__ = ["ISSUER", "TestIssuer"]

ISSUER = "https://idp.test.example/realms/region"
AUDIENCE = "patient-contracts-fhir-service"


class TestIssuer:
    """Signs tokens the way the region's identity provider would, with a key made per session."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, directory: Path) -> None:
        self.key = generate_key("RS256")
        self.jwks = directory / "jwks.json"
        write_jwks(self.jwks, [self.key])

    def settings(self) -> dict[str, Any]:
        """The ``Settings`` keywords of a service trusting this issuer."""
        return {"auth_issuer": ISSUER, "auth_audience": AUDIENCE, "auth_jwks_file": self.jwks}

    def env(self) -> dict[str, str]:
        """The same, as ``FHIR_SERVICE_*`` variables (without the prefix) for a service process."""
        return {"AUTH_ISSUER": ISSUER, "AUTH_AUDIENCE": AUDIENCE, "AUTH_JWKS_FILE": str(self.jwks)}

    def token(
        self,
        role: Role,
        *,
        organization: str | None = None,
        patient: str | None = None,
        subject: str | None = None,
        **claims: Any,
    ) -> str:
        """A valid token for ``role``; ``claims`` replace or add claims (None removes one)."""
        content = claims_for(
            role,
            issuer=ISSUER,
            audience=AUDIENCE,
            subject=subject or f"test-{role}",
            organization=organization,
            patient=patient,
            client_id=f"test-{role}-client",
        )
        content.update(claims)
        return mint_token(self.key, {k: v for k, v in content.items() if v is not None})

    def headers(self, role: Role, **kwargs: Any) -> dict[str, str]:
        """An ``Authorization`` header carrying ``token(role, **kwargs)``."""
        return {"Authorization": f"Bearer {self.token(role, **kwargs)}"}
