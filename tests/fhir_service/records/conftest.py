"""The records are tried through the FHIR endpoint, on the same service as its own tests."""

from tests.fhir_service.api.fhir.conftest import service

__all__ = ["service"]
