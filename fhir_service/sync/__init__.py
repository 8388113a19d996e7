"""Outbox, idempotency and subscriptions turned into webhook deliveries."""
