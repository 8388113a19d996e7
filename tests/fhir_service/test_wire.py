"""JSON on the wire: what orjson writes reads back as the standard library reads it, and what
orjson cannot write is written all the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_service import wire

FOREIGN = Path(__file__).parents[1] / "data" / "foreign"


@pytest.mark.parametrize(
    "path", sorted(FOREIGN.rglob("*.json")), ids=lambda p: str(p.relative_to(FOREIGN))
)
def test_foreign_fhir_is_written_and_read_as_the_standard_library_does(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))

    written = wire.dumps(document)

    assert json.loads(written) == document
    assert wire.loads(written) == document


def test_an_integer_beyond_64_bits_is_written_exactly_not_refused() -> None:
    resource = {"resourceType": "Observation", "valueQuantity": {"value": 10**30}, "note": "å"}

    written = wire.dumps(resource)

    assert json.loads(written) == resource
    assert "å".encode() in written
