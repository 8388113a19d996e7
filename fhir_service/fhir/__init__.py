"""The HAPI FHIR client: one pooled transport with typed errors, retries, metrics."""

from fhir_service.fhir.client import FHIR_JSON, HapiClient, RetryPolicy, SearchResult
from fhir_service.fhir.errors import (
    ConflictError,
    GoneError,
    HapiError,
    HapiOutcomeUnknownError,
    HapiRequestError,
    HapiUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PreconditionFailedError,
    ServerError,
)
from fhir_service.fhir.transport import InstrumentedTransport

__all__ = [
    "FHIR_JSON",
    "ConflictError",
    "GoneError",
    "HapiClient",
    "HapiError",
    "HapiOutcomeUnknownError",
    "HapiRequestError",
    "HapiUnavailableError",
    "InstrumentedTransport",
    "InvalidRequestError",
    "NotFoundError",
    "PreconditionFailedError",
    "RetryPolicy",
    "SearchResult",
    "ServerError",
]
