"""Development keys: files a JWKS consumer and a token minter can share, and tokens they verify."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fhir_service.security.dev_keys import (
    Algorithm,
    generate_key,
    load_private_key,
    mint_token,
    thumbprint,
    write_jwks,
    write_private_key,
)
from tests.support import load_data

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


@pytest.mark.parametrize(("algorithm", "kty"), [("RS256", "RSA"), ("ES256", "EC")])
def test_the_jwks_file_holds_public_signing_keys(
    tmp_path: Path, algorithm: Algorithm, kty: str
) -> None:
    key = generate_key(algorithm)
    path = tmp_path / "jwks.json"

    write_jwks(path, [key])

    [jwk] = json.loads(path.read_text())["keys"]
    assert {jwk["kid"], jwk["alg"], jwk["use"], jwk["kty"]} == {key.kid, algorithm, "sig", kty}
    assert not PRIVATE_MEMBERS & jwk.keys()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_private_key_file_is_private_and_names_its_key(
    tmp_path: Path, algorithm: Algorithm
) -> None:
    key = generate_key(algorithm)
    path = tmp_path / "signing-key.pem"
    path.write_text("left over from before")
    path.chmod(0o644)

    write_private_key(path, key)
    loaded = load_private_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (loaded.algorithm, loaded.kid) == (algorithm, key.kid)
    assert loaded.public_pem() == key.public_pem()


def test_thumbprints_follow_rfc_7638() -> None:
    example = load_data("security/rfc7638-example.json")

    assert thumbprint(example["jwk"]) == example["thumbprint"]


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_key_id_is_the_thumbprint_of_the_public_key(algorithm: Algorithm) -> None:
    first, second = generate_key(algorithm), generate_key(algorithm)

    assert first.kid == thumbprint(first.public_jwk())
    assert first.kid != second.kid


def test_a_minted_token_verifies_with_the_published_key(tmp_path: Path) -> None:
    key = generate_key("ES256")
    path = tmp_path / "jwks.json"
    write_jwks(path, [key])
    published = jwt.PyJWKSet.from_json(path.read_text())[key.kid]

    token = mint_token(key, {"sub": "clinician-4711", "scope": "patient/CarePlan.rs"})

    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": key.kid, "typ": "JWT"}
    assert jwt.decode(token, published, algorithms=["ES256"]) == {
        "sub": "clinician-4711",
        "scope": "patient/CarePlan.rs",
    }


def test_keys_of_other_kinds_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "p384.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(ValueError, match="neither an RSA nor an EC P-256"):
        load_private_key(path)
