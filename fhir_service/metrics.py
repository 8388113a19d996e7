"""Prometheus metrics of the service: its own HTTP traffic and its calls to HAPI."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
