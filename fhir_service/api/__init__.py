"""The HTTP surface: FastAPI app, routers, middleware and dependencies."""

from fhir_service.api.app import create_app

__all__ = ["create_app"]
