"""AuditEvent and Provenance: building them and writing them to HAPI."""
