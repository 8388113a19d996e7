"""Settings come from the environment and `.env`, and refuse development defaults in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fhir_service.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HAPI_URL", "DATABASE_URL", "ENVIRONMENT", "PORT", "DATA_DIR"):
        monkeypatch.delenv(f"FHIR_SERVICE_{name}", raising=False)
    monkeypatch.chdir(tmp_path)


def test_environment_variables_configure_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_SERVICE_HAPI_URL", "http://hapi.internal:8080/fhir")
    monkeypatch.setenv("FHIR_SERVICE_DATABASE_URL", "postgresql://svc@db/fhir_service")
    monkeypatch.setenv("FHIR_SERVICE_PORT", "9000")

    settings = Settings()

    assert str(settings.hapi_url) == "http://hapi.internal:8080/fhir"
    assert settings.resolved_database_url == "postgresql://svc@db/fhir_service"
    assert settings.port == 9000


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("FHIR_SERVICE_HAPI_URL=http://from-dotenv:8080/fhir\n")

    assert str(Settings().hapi_url) == "http://from-dotenv:8080/fhir"


def test_defaults_are_the_embedded_development_setup(tmp_path: Path) -> None:
    settings = Settings()

    assert settings.hapi_url is None
    assert settings.embedded_hapi_url == "http://127.0.0.1:8080/fhir"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 'service.db'}"


def test_production_requires_an_explicit_hapi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_SERVICE_ENVIRONMENT", "production")

    with pytest.raises(ValidationError, match="FHIR_SERVICE_HAPI_URL must be set in production"):
        Settings()


def test_production_requires_the_form_key_replicas_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_SERVICE_ENVIRONMENT", "production")
    monkeypatch.setenv("FHIR_SERVICE_HAPI_URL", "http://hapi:8080/fhir")

    with pytest.raises(ValidationError, match="FHIR_SERVICE_FORM_SECRET must be set"):
        Settings()
    monkeypatch.setenv("FHIR_SERVICE_FORM_SECRET", "too short")
    with pytest.raises(ValidationError, match="form_secret"):
        Settings()
    monkeypatch.setenv("FHIR_SERVICE_FORM_SECRET", "a-key-of-at-least-32-characters-0")
    assert Settings().form_secret is not None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "0"),
        ("HAPI_URL", "not a url"),
        ("NARRATIVE_LANGUAGE", "de"),
        ("BOOKING_LINK", "javascript:alert(1)"),
    ],
)
def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"FHIR_SERVICE_{name}", value)

    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
