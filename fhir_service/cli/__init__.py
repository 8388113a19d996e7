"""The ``fhir-service`` command: serve, mint tokens, register clients, map contracts, import and
export in bulk, and build, start and stop the local HAPI FHIR server."""

from fhir_service.cli.main import main

__all__ = ["main"]
