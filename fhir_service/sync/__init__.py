"""Change notifications: HAPI's Subscriptions wake the change feed, which routes each change to
the registered webhooks through the delivery outbox; and our profiles loaded into HAPI."""

from fhir_service.sync import conformance, housekeeping
from fhir_service.sync.conformance import CONFORMANCE_TYPES, conformance_resources
from fhir_service.sync.notifications import Notifications
from fhir_service.sync.startup import keep_trying
from fhir_service.sync.webhook_registrations import (
    InvalidWebhookError,
    Reach,
    Registration,
    TargetPolicy,
)
from fhir_service.sync.webhook_targets import webhook_client

__all__ = [
    "CONFORMANCE_TYPES",
    "InvalidWebhookError",
    "Notifications",
    "Reach",
    "Registration",
    "TargetPolicy",
    "conformance",
    "conformance_resources",
    "housekeeping",
    "keep_trying",
    "webhook_client",
]
