"""Log records become one JSON object each, carrying the current request id."""

from __future__ import annotations

import json
import logging
import sys

from fhir_service.logs import JsonFormatter, request_id_var


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("fhir_service.test", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_record_is_json_with_request_id_and_extra_fields() -> None:
    token = request_id_var.set("req-42")
    try:
        line = JsonFormatter().format(_record("request handled", status=201, route="/ready"))
    finally:
        request_id_var.reset(token)

    entry = json.loads(line)
    assert entry["message"] == "request handled"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "fhir_service.test"
    assert entry["request_id"] == "req-42"
    assert entry["status"] == 201
    assert entry["route"] == "/ready"


def test_exception_is_logged_with_its_stack_but_without_its_message() -> None:
    try:
        raise ValueError("personnummer 19121212-1212 is invalid")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()

    entry = json.loads(JsonFormatter().format(record))

    assert entry["exception"] == "ValueError"
    assert any("in test_exception_is_logged_with_its_stack" in line for line in entry["stack"])
    assert "19121212" not in json.dumps(entry)
    assert "request_id" not in entry
