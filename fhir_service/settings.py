"""The service's settings: one class, from the environment and `.env`, behind a cached getter."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Configuration of one service instance.

    Every field is read from an environment variable named ``FHIR_SERVICE_<FIELD>`` (or from a
    `.env` file in the working directory). Leaving ``hapi_url`` empty selects the embedded default:
    the service starts the local HAPI FHIR server built from ``hapi/`` and stops it on exit.
    """

    model_config = SettingsConfigDict(
        env_prefix="FHIR_SERVICE_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    hapi_url: AnyHttpUrl | None = Field(
        default=None,
        description="Base URL of the HAPI FHIR server, e.g. http://hapi:8080/fhir. "
        "Empty: start the embedded local HAPI.",
    )
    hapi_timeout_seconds: float = Field(default=30.0, gt=0)
    ready_timeout_seconds: float = Field(
        default=2.0, gt=0, description="How long /ready waits for HAPI and the service DB."
    )

    data_dir: Path = Field(
        default=Path("data"),
        description="Home of the embedded HAPI's H2 database and of the default SQLite file.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the service DB. Empty: a SQLite file under data_dir.",
    )

    embedded_hapi_port: int = Field(default=8080, ge=1, le=65535)
    embedded_hapi_start_timeout_seconds: float = Field(default=240.0, gt=0)

    narrative_language: Literal["sv", "nb", "en"] = Field(
        default="sv",
        description="Language of the narrative (CarePlan.text) of a contract written in a "
        "language we write no narrative in; every other contract's narrative is in its own.",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    booking_link: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Where patients cancel or rebook a booked time online (the region's booking "
        "platform), with {action} (cancel or rebook), {contract} and {time} filled in; the "
        "patient page links there where the clinic allows it. Empty: the page says until when "
        "a time can be changed online, without links.",
    )

    booking_hold_minutes: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="How long Appointment/$hold holds a time for its holder to book.",
    )
    booking_hold_sweep_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often lapsed holds are released in HAPI (their Slots are free to "
        "book and hold before that too).",
    )
    time_types_seed: Path | None = Field(
        default=None,
        description="Development: a file of care units' time types (mappings/booking/"
        "time-types.json) defined at start, each only if its unit has not defined it yet.",
    )

    hapi_hook_url: AnyHttpUrl | None = Field(
        default=None,
        description="Where HAPI's rest-hook Subscriptions reach this service's /hooks/hapi, "
        "e.g. http://service:8000/hooks/hapi. Empty: this host and port.",
    )
    change_feed_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        description="How often the service reads HAPI's _history for changes when no "
        "rest-hook has woken it.",
    )
    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated host patterns webhooks may target (*.region.example). "
        "Empty: any host that passes the other checks.",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Accept plain http:// webhook targets (tests, local use)."
    )
    webhook_allow_private_networks: bool = Field(
        default=False,
        description="Accept loopback and private-network webhook targets (tests, local use).",
    )

    auth_issuer: str | None = Field(
        default=None, description="The issuer (`iss`) bearer tokens must come from."
    )
    auth_audience: str | None = Field(
        default=None, description="The audience (`aud`) bearer tokens must be meant for."
    )
    auth_jwks_url: AnyHttpUrl | None = Field(
        default=None, description="Where the issuer publishes its signing keys (a JWKS)."
    )
    auth_jwks_file: Path | None = Field(
        default=None, description="A JWKS file of signing keys, instead of auth_jwks_url."
    )
    auth_token_url: AnyHttpUrl | None = Field(
        default=None,
        description="The issuer's token endpoint, which SMART discovery names to clients.",
    )
    auth_authorize_url: AnyHttpUrl | None = Field(
        default=None,
        description="The issuer's authorization endpoint (apps a person signs in to), which "
        "SMART discovery names to clients.",
    )
    auth_clock_skew_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How far token expiry and not-before may be off against this host's clock.",
    )
    auth_local_issuer: bool = Field(
        default=False,
        description="Development only: accept tokens minted by `fhir-service token` with a key "
        "kept under data_dir, instead of an identity provider's.",
    )
    form_secret: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="The key that signs the patient page's form tokens (protection against "
        "cross-site requests), the same for every replica. Empty: a random key per process, "
        "for one instance only; required in production.",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        description="The largest request body accepted; larger ones get 413.",
    )

    @model_validator(mode="after")
    def _refuse_development_defaults_in_production(self) -> Settings:
        if self.environment == "production" and self.hapi_url is None:
            raise ValueError(
                "FHIR_SERVICE_HAPI_URL must be set in production: "
                "the embedded HAPI is for local development only"
            )
        if self.environment == "production" and self.auth_local_issuer:
            raise ValueError(
                "FHIR_SERVICE_AUTH_LOCAL_ISSUER is for local development only; "
                "set FHIR_SERVICE_AUTH_ISSUER, _AUDIENCE and _JWKS_URL in production"
            )
        if self.environment == "production" and self.form_secret is None:
            raise ValueError(
                "FHIR_SERVICE_FORM_SECRET must be set in production: replicas must share the "
                "key of the patient page's form tokens"
            )
        return self

    @property
    def local_issuer_dir(self) -> Path:
        """Where the local development issuer keeps its key (see ``auth_local_issuer``)."""
        return self.data_dir / "local-issuer"

    @property
    def resolved_database_url(self) -> str:
        """The service DB URL in use: the configured one, or a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'service.db').resolve()}"

    @property
    def resolved_hapi_hook_url(self) -> str:
        """The hook URL HAPI is given: the configured one, or this host and port."""
        if self.hapi_hook_url is not None:
            return str(self.hapi_hook_url)
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        return f"http://{host}:{self.port}/hooks/hapi"

    @property
    def webhook_hosts(self) -> tuple[str, ...]:
        """The allowed webhook host patterns, parsed."""
        return tuple(h.strip().lower() for h in self.webhook_allowed_hosts.split(",") if h.strip())

    @property
    def embedded_hapi_url(self) -> str:
        """The base URL the embedded HAPI answers on."""
        return f"http://127.0.0.1:{self.embedded_hapi_port}/fhir"


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()
