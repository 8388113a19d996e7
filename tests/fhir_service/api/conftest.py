"""The JSON facade's tests of a party's acts start from ``story``: an agreed contract of a
patient of its own (`tests.fhir_service.api.parties.Story`) on a service of the test's own.
The patient page's tests open it in a real headless Chromium (``browser``), served by a service
process of the module's own (``page_service``), keeping a screenshot of each state they see."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.auth import TestIssuer
from tests.browser import chromium_path
from tests.fhir_service.api.parties import Story
from tests.service_app import ready_app
from tests.service_process import running_service


@pytest.fixture
def story(conformance_loaded: str, tmp_path: Path, issuer: TestIssuer) -> Iterator[Story]:
    with ready_app(conformance_loaded, tmp_path, issuer) as client:
        yield Story(client, issuer)


@pytest.fixture(scope="module")
def page_service(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("page")
    environment = {
        **issuer.env(),
        "HAPI_URL": conformance_loaded,
        "DATABASE_URL": f"sqlite:///{directory / 'service.db'}",
        "BOOKING_LINK": "https://tidbok.example/{action}?contract={contract}&time={time}",
    }
    with running_service(environment, directory / "service.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Root in a container has no user namespaces for Chromium's sandbox.
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("PLAN_SCREENSHOT_DIR") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory
