"""The service's own database: operational state, nothing clinical. Its engine and migrations
(`engine`, `migrations/`), its tables (`tables`), and the idempotency keys of writes
(`idempotency`)."""

from fhir_service.servicedb.engine import make_engine, migrate, ping

__all__ = ["make_engine", "migrate", "ping"]
