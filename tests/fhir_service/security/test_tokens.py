"""Bearer tokens: what is accepted and what it yields, each refusal and why, the key sources."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from fhir_service.security.dev_keys import DevKey, generate_key, mint_token, write_jwks
from fhir_service.security.tokens import (
    InvalidTokenError,
    JwksFile,
    JwksUrl,
    Principal,
    Rejection,
    SigningKeysUnavailableError,
    TokenValidator,
)
from fhir_service.settings import Settings
from tests.support import free_port, load_data

ISSUER = "https://idp.region.example/realms/care"
AUDIENCE = "https://contracts.region.example/fhir"


@pytest.fixture(scope="module")
def rsa_key() -> DevKey:
    return generate_key("RS256")


@pytest.fixture(scope="module")
def ec_key() -> DevKey:
    return generate_key("ES256")


@pytest.fixture
def jwks_path(tmp_path: Path, rsa_key: DevKey, ec_key: DevKey) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, [rsa_key, ec_key])
    return path


@pytest.fixture
def validator(jwks_path: Path) -> TokenValidator:
    return TokenValidator(JwksFile(jwks_path), issuer=ISSUER, audience=AUDIENCE)


def claims(**changes: Any) -> dict[str, Any]:
    """The SMART clinician claims of the data file, valid now; ``None`` removes a claim."""
    now = int(time.time())
    base = {**load_data("security/smart-claims.json"), "iss": ISSUER, "aud": AUDIENCE}
    merged = {**base, "iat": now, "exp": now + 300, **changes}
    return {name: value for name, value in merged.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    """A compact JWT assembled by hand, as an attacker would, with ``sign(signing_input)``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


def rejection(validator: TokenValidator, token: str) -> Rejection:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    return caught.value.reason


# --- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key"])
def test_a_valid_token_becomes_its_principal(
    validator: TokenValidator, request: pytest.FixtureRequest, key_name: str
) -> None:
    key: DevKey = request.getfixturevalue(key_name)

    principal = validator.validate(mint_token(key, claims()))

    assert principal == Principal(
        subject="clinician-4711",
        client_id="ehr-region-north",
        scopes=frozenset({"launch/patient", "patient/CarePlan.rs", "openid"}),
        patient="http://electronichealth.se/identifier/personnummer|191212121212",
        fhir_user="Practitioner/hsa-SE2321000016-1234",
        organization="urn:oid:1.2.752.29.4.19|SE2321000016-ABCD",
    )


def test_azp_names_the_client_and_scp_lists_scopes(
    validator: TokenValidator, rsa_key: DevKey
) -> None:
    token = mint_token(
        rsa_key,
        claims(
            client_id=None,
            azp="booking-platform",
            scope=None,
            scp=["system/Slot.rs", "system/Appointment.cu"],
            patient=None,
            fhirUser=None,
            organization=None,
        ),
    )

    principal = validator.validate(token)

    assert principal == Principal(
        subject="clinician-4711",
        client_id="booking-platform",
        scopes=frozenset({"system/Slot.rs", "system/Appointment.cu"}),
    )


def test_an_audience_list_holding_ours_is_accepted(
    validator: TokenValidator, rsa_key: DevKey
) -> None:
    token = mint_token(rsa_key, claims(aud=["https://other.example", AUDIENCE]))

    assert validator.validate(token).subject == "clinician-4711"


@pytest.mark.parametrize(
    "changes",
    [{"exp": -30}, {"nbf": 30}, {"iat": 30}],
    ids=["expired-within-skew", "not-before-within-skew", "issued-within-skew"],
)
def test_clock_skew_is_allowed(
    validator: TokenValidator, rsa_key: DevKey, changes: dict[str, int]
) -> None:
    now = int(time.time())
    token = mint_token(rsa_key, claims(**{name: now + delta for name, delta in changes.items()}))

    assert validator.validate(token).subject == "clinician-4711"


def test_the_clock_skew_is_configurable(jwks_path: Path, rsa_key: DevKey) -> None:
    strict = TokenValidator(
        JwksFile(jwks_path), issuer=ISSUER, audience=AUDIENCE, clock_skew_seconds=0
    )
    token = mint_token(rsa_key, claims(exp=int(time.time()) - 30))

    assert rejection(strict, token) is Rejection.EXPIRED


# --- refused --------------------------------------------------------------------------------


def test_alg_none_is_refused(validator: TokenValidator, rsa_key: DevKey) -> None:
    token = hand_made({"alg": "none", "kid": rsa_key.kid, "typ": "JWT"}, claims())

    assert rejection(validator, token) is Rejection.UNSUPPORTED_ALGORITHM


def test_hs256_signed_with_the_public_key_is_refused(
    validator: TokenValidator, rsa_key: DevKey
) -> None:
    # Algorithm confusion: a verifier that let the header choose HMAC would take the public PEM,
    # which anyone can read, as the shared secret.
    public_pem = rsa_key.public_pem()
    token = hand_made(
        {"alg": "HS256", "kid": rsa_key.kid, "typ": "JWT"},
        claims(),
        lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )

    assert rejection(validator, token) is Rejection.UNSUPPORTED_ALGORITHM


def test_other_asymmetric_algorithms_are_refused(
    validator: TokenValidator, rsa_key: DevKey
) -> None:
    token = jwt.encode(
        claims(), rsa_key.private_key, algorithm="RS384", headers={"kid": rsa_key.kid}
    )

    assert rejection(validator, token) is Rejection.UNSUPPORTED_ALGORITHM


def test_a_token_from_an_unknown_key_is_refused(validator: TokenValidator) -> None:
    assert rejection(validator, mint_token(generate_key(), claims())) is Rejection.UNKNOWN_KEY


def test_a_token_naming_no_key_is_refused(validator: TokenValidator, rsa_key: DevKey) -> None:
    token = jwt.encode(claims(), rsa_key.private_key, algorithm="RS256")

    assert rejection(validator, token) is Rejection.MISSING_KEY_ID


@pytest.mark.parametrize(
    ("signer", "named", "algorithm"),
    [("rsa_key", "ec_key", "RS256"), ("ec_key", "rsa_key", "ES256")],
)
def test_a_kid_naming_a_key_of_another_algorithm_is_refused(
    validator: TokenValidator,
    request: pytest.FixtureRequest,
    signer: str,
    named: str,
    algorithm: str,
) -> None:
    signing: DevKey = request.getfixturevalue(signer)
    kid = request.getfixturevalue(named).kid
    token = jwt.encode(claims(), signing.private_key, algorithm=algorithm, headers={"kid": kid})

    assert rejection(validator, token) is Rejection.KEY_ALGORITHM_MISMATCH


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_a_signature_by_another_key_is_refused(
    validator: TokenValidator, request: pytest.FixtureRequest, algorithm: str
) -> None:
    known: DevKey = request.getfixturevalue("rsa_key" if algorithm == "RS256" else "ec_key")
    impostor = generate_key(known.algorithm)
    token = jwt.encode(
        claims(), impostor.private_key, algorithm=algorithm, headers={"kid": known.kid}
    )

    assert rejection(validator, token) is Rejection.BAD_SIGNATURE


def test_a_tampered_payload_is_refused(validator: TokenValidator, rsa_key: DevKey) -> None:
    header, _, signature = mint_token(rsa_key, claims()).split(".")
    forged = b64(json.dumps(claims(sub="someone-else")).encode())

    assert rejection(validator, f"{header}.{forged}.{signature}") is Rejection.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": -120}, Rejection.EXPIRED),
        ({"nbf": 120}, Rejection.NOT_YET_VALID),
        ({"iat": 120}, Rejection.NOT_YET_VALID),
    ],
    ids=["expired", "not-before-ahead", "issued-in-the-future"],
)
def test_tokens_outside_their_time_window_are_refused(
    validator: TokenValidator, rsa_key: DevKey, changes: dict[str, int], reason: Rejection
) -> None:
    now = int(time.time())
    token = mint_token(rsa_key, claims(**{name: now + delta for name, delta in changes.items()}))

    assert rejection(validator, token) is reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://idp.elsewhere.example"}, Rejection.WRONG_ISSUER),
        ({"iss": None}, Rejection.WRONG_ISSUER),
        ({"aud": "https://other.example"}, Rejection.WRONG_AUDIENCE),
        ({"aud": None}, Rejection.WRONG_AUDIENCE),
        ({"exp": None}, Rejection.MISSING_EXPIRY),
        ({"sub": None}, Rejection.MISSING_SUBJECT),
        ({"sub": ""}, Rejection.MISSING_SUBJECT),
        ({"exp": "tomorrow"}, Rejection.MALFORMED),
        ({"scope": ["patient/CarePlan.rs"]}, Rejection.MALFORMED_CLAIMS),
        ({"scp": "patient/CarePlan.rs"}, Rejection.MALFORMED_CLAIMS),
        ({"scp": ["patient/CarePlan.rs", 7]}, Rejection.MALFORMED_CLAIMS),
        ({"patient": 191212121212}, Rejection.MALFORMED_CLAIMS),
        ({"organization": {"system": "urn:oid:1.2.752.29.4.19"}}, Rejection.MALFORMED_CLAIMS),
    ],
    ids=[
        "wrong-issuer",
        "no-issuer",
        "wrong-audience",
        "no-audience",
        "no-expiry",
        "no-subject",
        "empty-subject",
        "expiry-not-a-number",
        "scope-not-a-string",
        "scp-not-a-list",
        "scp-not-strings",
        "patient-not-a-string",
        "organization-not-a-string",
    ],
)
def test_tokens_with_wrong_or_missing_claims_are_refused(
    validator: TokenValidator, ec_key: DevKey, changes: dict[str, Any], reason: Rejection
) -> None:
    assert rejection(validator, mint_token(ec_key, claims(**changes))) is reason


@pytest.mark.parametrize(
    "token",
    ["", "not-a-token", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30", "eyJhbGciOiJSUzI1NiJ9..."],
)
def test_malformed_tokens_are_refused(validator: TokenValidator, token: str) -> None:
    assert rejection(validator, token) is Rejection.MALFORMED


def test_a_header_kid_that_is_not_a_string_is_refused(
    validator: TokenValidator, rsa_key: DevKey
) -> None:
    token = hand_made({"alg": "RS256", "kid": 7}, claims(), lambda _: b"x")

    assert rejection(validator, token) is Rejection.MALFORMED


def test_a_refusal_quotes_nothing_from_the_token(validator: TokenValidator) -> None:
    marker = "<script>secret-marker</script>"
    token = hand_made({"alg": "RS256", "kid": marker}, claims(sub=marker), lambda _: b"x")

    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)

    assert str(caught.value) == "unknown signing key"
    assert caught.value.__cause__ is None
    assert all(c.isascii() and c not in '"\\' for r in Rejection for c in r.value)


def test_pyjwt_messages_do_not_travel_with_a_refusal(
    validator: TokenValidator, rsa_key: DevKey
) -> None:
    token = mint_token(rsa_key, claims(iss="https://marker.example"))

    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)

    assert str(caught.value) == "wrong issuer"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# --- JWKS file ------------------------------------------------------------------------------


def test_keys_not_meant_for_signatures_are_ignored(tmp_path: Path, rsa_key: DevKey) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**rsa_key.public_jwk(), "use": "enc"}]}))
    validator = TokenValidator(JwksFile(path), issuer=ISSUER, audience=AUDIENCE)

    assert rejection(validator, mint_token(rsa_key, claims())) is Rejection.UNKNOWN_KEY


@pytest.mark.parametrize("content", [None, "{not json", '{"keys": []}', '{"keys": [{"kty": "x"}]}'])
def test_an_unusable_jwks_file_is_reported(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(SigningKeysUnavailableError):
        JwksFile(path)


# --- JWKS URL -------------------------------------------------------------------------------


class JwksServer(ThreadingHTTPServer):
    """Serves ``jwks`` (or ``status`` when it is not 200) and counts the fetches."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _JwksHandler)
        self.jwks: dict[str, Any] = {"keys": []}
        self.status = 200
        self.fetches = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/jwks.json"

    def publish(self, *keys: DevKey) -> None:
        with self.lock:
            self.jwks = {"keys": [key.public_jwk() for key in keys]}


class _JwksHandler(BaseHTTPRequestHandler):
    server: JwksServer

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.fetches += 1
            status, body = self.server.status, json.dumps(self.server.jwks).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


COOLDOWN = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def url_validator(jwks_server: JwksServer, clock: FakeClock) -> TokenValidator:
    keys = JwksUrl(jwks_server.url, refresh_cooldown_seconds=COOLDOWN, clock=clock)
    return TokenValidator(keys, issuer=ISSUER, audience=AUDIENCE)


def test_the_fetched_key_set_is_cached(
    url_validator: TokenValidator, jwks_server: JwksServer, rsa_key: DevKey, ec_key: DevKey
) -> None:
    jwks_server.publish(rsa_key, ec_key)

    for key in (rsa_key, ec_key, rsa_key, ec_key, rsa_key):
        assert url_validator.validate(mint_token(key, claims())).subject == "clinician-4711"

    assert jwks_server.fetches == 1


def test_a_new_kid_triggers_one_refresh(
    url_validator: TokenValidator, jwks_server: JwksServer, rsa_key: DevKey, ec_key: DevKey
) -> None:
    jwks_server.publish(rsa_key)
    url_validator.validate(mint_token(rsa_key, claims()))
    jwks_server.publish(rsa_key, ec_key)  # the issuer rotates in a new key

    for _ in range(3):
        assert url_validator.validate(mint_token(ec_key, claims())).subject == "clinician-4711"

    assert jwks_server.fetches == 2


def test_a_flood_of_unknown_kids_fetches_once_per_cooldown(
    url_validator: TokenValidator,
    jwks_server: JwksServer,
    clock: FakeClock,
    rsa_key: DevKey,
    ec_key: DevKey,
) -> None:
    jwks_server.publish(rsa_key)
    url_validator.validate(mint_token(rsa_key, claims()))
    forged = [
        hand_made({"alg": "RS256", "kid": f"random-{n}"}, claims(), lambda _: b"x")
        for n in range(50)
    ]

    assert {rejection(url_validator, token) for token in forged} == {Rejection.UNKNOWN_KEY}
    assert jwks_server.fetches == 2

    # A key rotated in during the cooldown waits for it; known keys keep working meanwhile.
    jwks_server.publish(rsa_key, ec_key)
    clock.now += COOLDOWN - 1
    assert rejection(url_validator, mint_token(ec_key, claims())) is Rejection.UNKNOWN_KEY
    assert url_validator.validate(mint_token(rsa_key, claims())).subject == "clinician-4711"
    assert jwks_server.fetches == 2

    clock.now += 1
    assert url_validator.validate(mint_token(ec_key, claims())).subject == "clinician-4711"
    assert jwks_server.fetches == 3


def test_concurrent_tokens_with_a_new_kid_fetch_once(
    url_validator: TokenValidator, jwks_server: JwksServer, rsa_key: DevKey, ec_key: DevKey
) -> None:
    jwks_server.publish(rsa_key)
    url_validator.validate(mint_token(rsa_key, claims()))
    jwks_server.publish(rsa_key, ec_key)
    token = mint_token(ec_key, claims())
    subjects: list[str] = []

    threads = [
        threading.Thread(target=lambda: subjects.append(url_validator.validate(token).subject))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert subjects == ["clinician-4711"] * 8
    assert jwks_server.fetches == 2


@pytest.mark.parametrize(
    ("status", "jwks"),
    [(503, {"keys": []}), (200, {"keys": []}), (200, ["not", "a", "key", "set"])],
    ids=["unavailable", "no-keys", "not-a-key-set"],
)
def test_an_unusable_jwks_url_is_reported(
    url_validator: TokenValidator,
    jwks_server: JwksServer,
    rsa_key: DevKey,
    status: int,
    jwks: Any,
) -> None:
    jwks_server.status, jwks_server.jwks = status, jwks

    with pytest.raises(SigningKeysUnavailableError):
        url_validator.validate(mint_token(rsa_key, claims()))


def test_an_outage_after_a_fetch_keeps_the_cached_keys(
    url_validator: TokenValidator, jwks_server: JwksServer, clock: FakeClock, rsa_key: DevKey
) -> None:
    jwks_server.publish(rsa_key)
    url_validator.validate(mint_token(rsa_key, claims()))
    jwks_server.status = 503
    clock.now += COOLDOWN

    with pytest.raises(SigningKeysUnavailableError):
        url_validator.validate(mint_token(generate_key(), claims()))
    assert url_validator.validate(mint_token(rsa_key, claims())).subject == "clinician-4711"


# --- from settings --------------------------------------------------------------------------


@pytest.fixture
def auth_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("FHIR_SERVICE_AUTH_ISSUER", ISSUER)
    monkeypatch.setenv("FHIR_SERVICE_AUTH_AUDIENCE", AUDIENCE)
    return monkeypatch


def test_settings_name_a_jwks_file(
    auth_environment: pytest.MonkeyPatch, jwks_path: Path, rsa_key: DevKey
) -> None:
    auth_environment.setenv("FHIR_SERVICE_AUTH_JWKS_FILE", str(jwks_path))
    auth_environment.setenv("FHIR_SERVICE_AUTH_CLOCK_SKEW_SECONDS", "0")
    validator = TokenValidator.from_settings(Settings())

    assert validator.validate(mint_token(rsa_key, claims())).subject == "clinician-4711"
    expired = mint_token(rsa_key, claims(exp=int(time.time()) - 30))
    assert rejection(validator, expired) is Rejection.EXPIRED


def test_settings_name_a_jwks_url(
    auth_environment: pytest.MonkeyPatch, jwks_server: JwksServer, ec_key: DevKey
) -> None:
    jwks_server.publish(ec_key)
    auth_environment.setenv("FHIR_SERVICE_AUTH_JWKS_URL", jwks_server.url)
    validator = TokenValidator.from_settings(Settings())

    assert validator.validate(mint_token(ec_key, claims())).subject == "clinician-4711"
    assert jwks_server.fetches == 1


def test_the_default_clock_skew_is_a_minute(auth_environment: pytest.MonkeyPatch) -> None:
    assert Settings().auth_clock_skew_seconds == 60


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ISSUER": None, "JWKS_FILE": "jwks"}, "needs FHIR_SERVICE_AUTH_ISSUER"),
        ({"AUDIENCE": None, "JWKS_FILE": "jwks"}, "needs FHIR_SERVICE_AUTH_ISSUER"),
        ({}, "FHIR_SERVICE_AUTH_JWKS_URL or FHIR_SERVICE_AUTH_JWKS_FILE"),
        ({"JWKS_FILE": "jwks", "JWKS_URL": "http://idp.example/jwks"}, "not both"),
    ],
    ids=["no-issuer", "no-audience", "no-keys", "two-key-sources"],
)
def test_incomplete_settings_are_refused(
    auth_environment: pytest.MonkeyPatch,
    jwks_path: Path,
    changes: dict[str, str | None],
    message: str,
) -> None:
    for name, value in changes.items():
        if value is None:
            auth_environment.delenv(f"FHIR_SERVICE_AUTH_{name}")
        else:
            auth_environment.setenv(
                f"FHIR_SERVICE_AUTH_{name}", str(jwks_path) if value == "jwks" else value
            )

    with pytest.raises(ValueError, match=message):
        TokenValidator.from_settings(Settings())


# --- remembered -----------------------------------------------------------------------------


class CountingKeys:
    """A key source that counts how often a key is asked for."""

    def __init__(self, keys: JwksFile) -> None:
        self.keys = keys
        self.asked = 0

    def key(self, kid: str) -> Any:
        self.asked += 1
        return self.keys.key(kid)


def test_a_verified_token_is_remembered_and_not_checked_again(
    jwks_path: Path, rsa_key: DevKey
) -> None:
    keys = CountingKeys(JwksFile(jwks_path))
    validator = TokenValidator(keys, issuer=ISSUER, audience=AUDIENCE)
    token = mint_token(rsa_key, claims())

    first = validator.validate(token)
    second = validator.validate(token)

    assert first == second == validator.remembered(token)
    assert keys.asked == 1


def test_a_refused_token_is_checked_every_time(jwks_path: Path, rsa_key: DevKey) -> None:
    keys = CountingKeys(JwksFile(jwks_path))
    validator = TokenValidator(keys, issuer=ISSUER, audience=AUDIENCE)
    expired = mint_token(rsa_key, claims(exp=int(time.time()) - 3600))

    for _ in range(2):
        assert rejection(validator, expired) is Rejection.EXPIRED

    assert keys.asked == 2
    assert validator.remembered(expired) is None
