"""The service's own database: operational state, nothing clinical. Its engine and migrations
(`engine`, `migrations/`), its tables (`tables`), and the idempotency keys of writes
(`idempotency`)."""

from fhir_service.servicedb.engine import make_engine, migrate, ping
from fhir_service.servicedb.idempotency import (
    IdempotencyKeyReusedError,
    IdempotencyStore,
    RequestInProgressError,
    StoredResponse,
)
from fhir_service.servicedb.instances import ThisInstance

__all__ = [
    "IdempotencyKeyReusedError",
    "IdempotencyStore",
    "RequestInProgressError",
    "StoredResponse",
    "ThisInstance",
    "make_engine",
    "migrate",
    "ping",
]
