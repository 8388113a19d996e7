"""The local issuer's clients prove themselves with assertions signed by their own keys."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from fhir_service.security.dev_keys import DevKey, generate_key, mint_token
from fhir_service.security.local_clients import (
    ClientAssertionError,
    LocalClient,
    grantable,
    register,
    registered,
    verified_client,
)

TOKEN_URL = "http://127.0.0.1:8000/auth/token"


def _assertion(key: DevKey, client_id: str = "ehr-1", **changes: Any) -> str:
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 120,
        "jti": uuid.uuid4().hex,
        **changes,
    }
    return mint_token(key, {k: v for k, v in claims.items() if v is not None})


@pytest.fixture
def key(tmp_path: Path) -> DevKey:
    key = generate_key("ES256")
    register(
        tmp_path,
        LocalClient("ehr-1", "ehr", {"keys": [key.public_jwk()]}, organization="hsa-id|X"),
    )
    return key


def test_a_registered_client_is_read_back(key: DevKey, tmp_path: Path) -> None:
    client = registered(tmp_path, "ehr-1")

    assert client is not None
    assert (client.role, client.organization, client.patient) == ("ehr", "hsa-id|X", None)
    assert registered(tmp_path, "someone-else") is None


def test_a_good_assertion_names_its_client(key: DevKey, tmp_path: Path) -> None:
    assert verified_client(tmp_path, _assertion(key), TOKEN_URL).client_id == "ehr-1"


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"aud": "http://elsewhere/token"}, "not made for this token endpoint"),
        ({"exp": int(time.time()) - 10}, "has expired"),
        ({"exp": int(time.time()) + 3600}, "over five minutes"),
        ({"jti": None}, "has no jti"),
        ({"sub": "another"}, "no client is registered"),
    ],
)
def test_a_bad_assertion_is_refused_saying_why(
    key: DevKey, tmp_path: Path, changes: dict[str, Any], said: str
) -> None:
    with pytest.raises(ClientAssertionError) as caught:
        verified_client(tmp_path, _assertion(key, **changes), TOKEN_URL)

    assert caught.value.error == "invalid_client"
    assert said in caught.value.description


def test_an_assertion_signed_by_another_key_is_refused(key: DevKey, tmp_path: Path) -> None:
    stranger = generate_key("ES256")

    with pytest.raises(ClientAssertionError):
        verified_client(tmp_path, _assertion(stranger), TOKEN_URL)
    with pytest.raises(ClientAssertionError):
        verified_client(tmp_path, "not a jwt", TOKEN_URL)


def test_only_scopes_the_clients_role_holds_are_granted(key: DevKey, tmp_path: Path) -> None:
    client = registered(tmp_path, "ehr-1")
    assert client is not None

    asked = "system/CarePlan.rs system/AuditEvent.rs user/CarePlan.rs openid system/Goal.read"
    granted = [str(s) for s in grantable(client, asked)]

    # Narrower than the role's is given; another type, context or a non-resource scope is not.
    assert granted == ["system/CarePlan.rs", "system/Goal.rs"]
