"""Alembic migrations of the service DB; ``servicedb.migrate`` runs them at start."""
