"""``fhir-service token``: tokens the local issuer's service accepts; refusals before any key."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from fhir_service.cli.tokens import mint
from fhir_service.security.roles import ROLE_SCOPES, Role
from fhir_service.security.tokens import TokenValidator
from fhir_service.settings import Settings

HAPI_URL = "http://hapi.invalid/fhir"
UNIT = "hsa-id|SE2321000065-1254"
PATIENT = "personnummer|19121212-1212"


def local_settings(data_dir: Path, *, local_issuer: bool = True) -> Settings:
    return Settings(auth_local_issuer=local_issuer, data_dir=data_dir, hapi_url=HAPI_URL)


def run_mint(
    settings: Settings,
    role: Role,
    *,
    subject: str | None = None,
    organization: str | None = None,
    patient: str | None = None,
    lifetime_seconds: int = 3600,
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = mint(
        settings,
        role,
        subject=subject,
        organization=organization,
        patient=patient,
        lifetime_seconds=lifetime_seconds,
        out=out,
        err=err,
    )
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("role", "organization", "patient"),
    [
        ("clinician", UNIT, None),
        ("ehr", UNIT, None),
        ("booking", None, None),
        ("patient", None, PATIENT),
        ("auditor", None, None),
        ("clinician", "organisasjonsnummer|974760673", None),
    ],
)
def test_a_minted_token_is_accepted_by_a_service_on_the_same_data_dir(
    tmp_path: Path, role: Role, organization: str | None, patient: str | None
) -> None:
    settings = local_settings(tmp_path)

    code, out, err = run_mint(settings, role, organization=organization, patient=patient)
    principal = TokenValidator.from_settings(settings).validate(out.strip())

    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    assert principal.scopes == frozenset(ROLE_SCOPES[role])
    assert (principal.organization, principal.patient) == (organization, patient)
    assert (principal.subject, principal.client_id) == (f"local-{role}", "fhir-service-cli")


def test_the_subject_and_lifetime_given_are_the_tokens(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)

    _, out, _ = run_mint(settings, "auditor", subject="auditor-17", lifetime_seconds=120)
    token = out.strip()
    claims = jwt.decode(token, options={"verify_signature": False})

    assert TokenValidator.from_settings(settings).validate(token).subject == "auditor-17"
    assert claims["exp"] - claims["iat"] == 120


def test_later_tokens_are_signed_with_the_same_kept_key(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    run_mint(settings, "auditor")
    validator = TokenValidator.from_settings(settings)

    _, out, _ = run_mint(settings, "booking")

    assert validator.validate(out.strip()).subject == "local-booking"


def test_the_private_key_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    run_mint(local_settings(tmp_path), "auditor")

    key_file = tmp_path / "local-issuer" / "local-issuer-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("role", "organization", "patient", "message"),
    [
        ("clinician", None, None, "--organization"),
        ("ehr", None, None, "--organization"),
        ("patient", None, None, "--patient"),
        ("clinician", "hsa-id|x", None, "not a valid identifier"),
        ("booking", "hsa-id|x", None, "not a valid identifier"),
        ("clinician", "personnummer|19121212-1212", None, "not a valid identifier"),
        ("clinician", "SE2321000065-1254", None, "kind|value"),
        ("patient", None, "personnummer|19121212-1213", "not a valid identifier"),
        ("patient", None, "hsa-id|SE2321000065-1254", "not a valid identifier"),
        ("patient", None, "191212121212", "kind|value"),
        ("relative", None, None, "--patient"),
        ("relative", None, "personnummer|19121212-1212", "--fhir-user"),
    ],
)
def test_a_token_missing_or_misnaming_its_unit_or_patient_is_refused(
    tmp_path: Path, role: Role, organization: str | None, patient: str | None, message: str
) -> None:
    code, out, err = run_mint(
        local_settings(tmp_path), role, organization=organization, patient=patient
    )

    assert (code, out) == (2, "")
    assert err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "local-issuer").exists()


def test_no_token_is_minted_unless_the_local_issuer_is_on(tmp_path: Path) -> None:
    code, out, err = run_mint(local_settings(tmp_path, local_issuer=False), "auditor")

    assert (code, out) == (2, "")
    assert "FHIR_SERVICE_AUTH_LOCAL_ISSUER=true" in err
    assert not (tmp_path / "local-issuer").exists()


def test_production_settings_refuse_the_local_issuer() -> None:
    with pytest.raises(ValidationError, match="local development"):
        Settings(environment="production", auth_local_issuer=True, hapi_url=HAPI_URL)


def _cli(tmp_path: Path, *args: str, local_issuer: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_SERVICE_")}
    env["FHIR_SERVICE_DATA_DIR"] = str(tmp_path)
    if local_issuer:
        env["FHIR_SERVICE_AUTH_LOCAL_ISSUER"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "fhir_service", "token", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_line_prints_one_jwt(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--role", "auditor", local_issuer=True)

    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert line.count(".") == 2
    assert TokenValidator.from_settings(local_settings(tmp_path)).validate(line).scopes == {
        *ROLE_SCOPES["auditor"]
    }


def test_the_command_line_passes_on_the_organization_subject_and_lifetime(tmp_path: Path) -> None:
    done = _cli(
        tmp_path,
        *("--role", "clinician", "--organization", UNIT),
        *("--subject", "dr-who", "--lifetime", "90"),
        local_issuer=True,
    )
    token = done.stdout.strip()
    principal = TokenValidator.from_settings(local_settings(tmp_path)).validate(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    assert (principal.subject, principal.organization) == ("dr-who", UNIT)
    assert claims["exp"] - claims["iat"] == 90


def test_a_relatives_token_names_the_patient_and_their_related_person(tmp_path: Path) -> None:
    done = _cli(
        tmp_path,
        *("--role", "relative", "--patient", PATIENT, "--fhir-user", "RelatedPerson/42"),
        local_issuer=True,
    )

    assert done.returncode == 0, done.stderr
    principal = TokenValidator.from_settings(local_settings(tmp_path)).validate(done.stdout.strip())
    assert (principal.patient, principal.fhir_user) == (PATIENT, "RelatedPerson/42")
    assert principal.scopes == {*ROLE_SCOPES["relative"]}


def test_the_command_line_refuses_without_the_local_issuer(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--role", "auditor", local_issuer=False)

    assert (done.returncode, done.stdout) == (2, "")
    assert "FHIR_SERVICE_AUTH_LOCAL_ISSUER" in done.stderr
