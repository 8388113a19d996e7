"""Signing keys and tokens of our own, for tests and local development; never for production.

A key's id is its RFC 7638 thumbprint, so a private key file alone names its key: whoever loads
it mints tokens whose ``kid`` the matching JWKS file knows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

__all__ = [
    "Algorithm",
    "DevKey",
    "generate_key",
    "load_private_key",
    "mint_token",
    "thumbprint",
    "write_jwks",
    "write_private_key",
]

Algorithm = Literal["RS256", "ES256"]

# The members RFC 7638 hashes, per key type, in the order it requires (lexicographic).
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


@dataclass(frozen=True, slots=True)
class DevKey:
    """A private signing key with the algorithm it signs with and its key id."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    algorithm: Algorithm

    @property
    def kid(self) -> str:
        """The key id: the RFC 7638 thumbprint of the public key."""
        return thumbprint(self._public_members())

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, with ``kid``, ``alg`` and ``use: sig``."""
        return {**self._public_members(), "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _public_members(self) -> dict[str, str]:
        public = self.private_key.public_key()
        jwk = (
            RSAAlgorithm.to_jwk(public, as_dict=True)
            if isinstance(public, rsa.RSAPublicKey)
            else ECAlgorithm.to_jwk(public, as_dict=True)
        )
        return {name: jwk[name] for name in ("kty", "crv", "x", "y", "n", "e") if name in jwk}


def thumbprint(jwk: Mapping[str, str]) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url) of an RSA or EC public JWK."""
    canonical = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def generate_key(algorithm: Algorithm = "RS256") -> DevKey:
    """A new key pair: RSA 2048 for RS256, P-256 for ES256."""
    if algorithm == "RS256":
        return DevKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), algorithm)
    return DevKey(ec.generate_private_key(ec.SECP256R1()), algorithm)


def write_jwks(path: Path, keys: Iterable[DevKey]) -> None:
    """Write the public halves of ``keys`` as a JWKS file."""
    jwks = {"keys": [key.public_jwk() for key in keys]}
    path.write_text(json.dumps(jwks, indent=2) + "\n", encoding="utf-8")


def write_private_key(path: Path, key: DevKey) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, readable by its owner only (mode 0600)."""
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created with 0600 so the key is never readable by others, not even for a moment; the
    # chmod covers a file that already existed with wider permissions.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(pem)


def load_private_key(path: Path) -> DevKey:
    """A key written by `write_private_key`; ValueError if it is neither RSA nor EC P-256."""
    private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if isinstance(private_key, rsa.RSAPrivateKey):
        return DevKey(private_key, "RS256")
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
        private_key.curve, ec.SECP256R1
    ):
        return DevKey(private_key, "ES256")
    raise ValueError(f"{path} holds neither an RSA nor an EC P-256 private key")


def mint_token(key: DevKey, claims: Mapping[str, Any]) -> str:
    """A JWT carrying exactly ``claims``, signed by ``key`` and naming it in ``kid``."""
    return jwt.encode(
        dict(claims), key.private_key, algorithm=key.algorithm, headers={"kid": key.kid}
    )


LOCAL_ISSUER = "urn:patient-contracts:local-issuer"
"""The ``iss`` of tokens minted by `fhir-service token` for local development."""
LOCAL_AUDIENCE = "patient-contracts-fhir-service"
"""The ``aud`` of those tokens, and what a service using the local issuer expects."""


def local_issuer_key(directory: Path) -> tuple[DevKey, Path]:
    """The local issuer's key and JWKS file under ``directory``, made on first use.

    The service (checking tokens) and `fhir-service token` (minting them) share the directory,
    so tokens minted from the command line are accepted by a service on the same data dir.
    """
    directory.mkdir(parents=True, exist_ok=True)
    private, jwks = directory / "local-issuer-key.pem", directory / "local-issuer-jwks.json"
    if private.exists():
        key = load_private_key(private)
    else:
        key = generate_key("ES256")
        write_private_key(private, key)
    if not jwks.exists():
        write_jwks(jwks, [key])
    return key, jwks
