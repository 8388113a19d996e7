"""The HAPI FHIR client: one pooled ``httpx.AsyncClient`` with request ids and metrics."""

from fhir_service.fhir.client import HapiClient, HapiRequestError, HapiUnavailableError
from fhir_service.fhir.transport import InstrumentedTransport

__all__ = ["HapiClient", "HapiRequestError", "HapiUnavailableError", "InstrumentedTransport"]
