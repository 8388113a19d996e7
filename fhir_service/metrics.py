"""Prometheus metrics of the service: its own HTTP traffic, its calls to HAPI, and its outboxes."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The feed gathers a wake's changes for half a second, reads on a timer when no wake comes, and
# sweeps late commits an overlap (30 s) later.
_LAG_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class Metrics:
    """The metric families of one app instance, in a registry of its own.

    A registry per instance (not the global default) keeps several apps in one process, as in
    tests, from counting into each other.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "fhir_service_http_requests",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "fhir_service_http_request_duration_seconds",
            "Time to handle an HTTP request, by method, route template and status code.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.hapi_requests = Counter(
            "fhir_service_hapi_requests",
            "Requests sent to HAPI FHIR, by method and outcome (HTTP status or error class).",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.hapi_latency = Histogram(
            "fhir_service_hapi_request_duration_seconds",
            "Time for HAPI FHIR to answer, by method and outcome.",
            ["method", "outcome"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.audit_pending = Gauge(
            "fhir_service_audit_records_pending",
            "Audit records kept in the service DB and not yet written to HAPI.",
            registry=self.registry,
        )
        self.change_feed_lag = Histogram(
            "fhir_service_change_feed_lag_seconds",
            "Time from HAPI's stamp of a watched change to its webhook event being enqueued, "
            "by the service's clock: how far the change feed lags behind HAPI.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.deliveries_pending = Gauge(
            "fhir_service_webhook_deliveries_pending",
            "Webhook deliveries waiting for their receiver.",
            registry=self.registry,
        )

    def watch_backlogs(self, audit: Callable[[], int], deliveries: Callable[[], int]) -> None:
        """Read the outboxes' backlogs whenever the metrics are scraped.

        A backlog that cannot be read (the DB is down or not migrated yet) shows as NaN, so a
        scrape never fails and an alert can tell "unknown" from "empty".
        """
        self.audit_pending.set_function(_unless_failing(audit))
        self.deliveries_pending.set_function(_unless_failing(deliveries))


def _unless_failing(count: Callable[[], int]) -> Callable[[], float]:
    def read() -> float:
        try:
            return float(count())
        except Exception:
            _log.warning("an outbox backlog could not be read for the metrics", exc_info=True)
            return math.nan

    return read
