"""The instrumented transport against the real HAPI: HAPI receives our request id."""

from __future__ import annotations

import httpx

from fhir_service.fhir import InstrumentedTransport
from fhir_service.logs import request_id_var
from fhir_service.metrics import Metrics


async def test_hapi_receives_the_request_id_and_the_call_is_measured(hapi_base_url: str) -> None:
    metrics = Metrics()
    transport = InstrumentedTransport(httpx.AsyncHTTPTransport(), metrics)
    token = request_id_var.set("trace-me-42")
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get(f"{hapi_base_url}/metadata?_elements=fhirVersion")
    finally:
        request_id_var.reset(token)

    # HAPI adopts a caller's X-Request-ID as its own request id and echoes it back.
    assert response.headers["X-Request-ID"] == "trace-me-42"
    samples = {"method": "GET", "outcome": "200"}
    assert metrics.registry.get_sample_value("fhir_service_hapi_requests_total", samples) == 1
    assert (
        metrics.registry.get_sample_value(
            "fhir_service_hapi_request_duration_seconds_count", samples
        )
        == 1
    )
