"""Audit: AuditEvents for every access and their durable way into HAPI."""
