"""The JSON facade's tests of a party's acts start from ``story``: an agreed contract of a
patient of its own (`tests.fhir_service.api.parties.Story`) on a service of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth import TestIssuer
from tests.fhir_service.api.parties import Story
from tests.service_app import ready_app


@pytest.fixture
def story(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[Story]:
    with ready_app(conformance_loaded, tmp_path, issuer) as client:
        yield Story(client, issuer)
