"""``fhir-service serve`` in this process, uvicorn's loop left out."""

from __future__ import annotations

import argparse
import gc
import signal
from pathlib import Path

import pytest
import uvicorn

from fhir_service.cli.serve import serve
from fhir_service.settings import Settings


def test_the_garbage_collector_leaves_out_what_is_built_at_the_start_and_runs_seldom(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    when_serving: list[tuple[int, tuple[int, int, int]]] = []
    monkeypatch.setattr(
        uvicorn.Server,
        "run",
        lambda _self: when_serving.append((gc.get_freeze_count(), gc.get_threshold())),
    )
    settings = Settings(
        hapi_url="http://127.0.0.1:9/fhir",  # never asked: the app is not started
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        auth_local_issuer=True,
    )
    terminate = signal.getsignal(signal.SIGTERM)
    threshold = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        exit_code = serve(argparse.Namespace(host="127.0.0.1", port=0), settings)
    finally:
        # The rest of the test session collects its garbage as before.
        gc.unfreeze()
        gc.set_threshold(*threshold)
        signal.signal(signal.SIGTERM, terminate)

    assert exit_code == 0
    # The app, its routes and models were frozen before the server ran.
    [(frozen, (young, _, _))] = when_serving
    assert frozen > 10_000
    # Young collections once every 10,000 new objects, not Python's 700.
    assert young == 10_000
