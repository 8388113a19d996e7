"""The seed ``make run`` loads: defined at start, before the service is ready, and never over
what the unit itself defined since."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_service.api import create_app
from fhir_service.settings import Settings
from tests.auth import TestIssuer
from tests.service_app import ready_app
from tests.support import load_data, unique_hsa_id
from tests.time_types import define


def test_the_seed_is_defined_before_ready_and_keeps_what_the_unit_changed(
    conformance_loaded: str, issuer: TestIssuer, tmp_path: Path
) -> None:
    hsa_id = unique_hsa_id()
    seed = load_data("booking/seed.json", unit=hsa_id)
    path = tmp_path / "time-types.json"
    path.write_text(json.dumps(seed), encoding="utf-8")
    unit = seed["care_units"][0]
    ehr = issuer.headers("ehr", organization=unit["care_unit"])
    listed = f"/booking/care-units/{unit['care_unit']}/time-types"

    (tmp_path / "first").mkdir()
    (tmp_path / "again").mkdir()
    with ready_app(conformance_loaded, tmp_path / "first", issuer, time_types_seed=path) as app:
        # Ready means seeded: the first request finds the unit's types.
        assert app.get("/ready").json()["checks"]["time_types"] == {"status": "up"}
        [kind] = app.get(listed, headers=ehr).json()["time_types"]
        assert (kind["code"], kind["minutes"]) == ("physio-visit", 45)
        changed = define(app, ehr, unit, unit["time_types"][0] | {"minutes": 60})
        assert changed.status_code == 200, changed.text

    with ready_app(conformance_loaded, tmp_path / "again", issuer, time_types_seed=path) as app:
        [kind] = app.get(listed, headers=ehr).json()["time_types"]
        assert kind["minutes"] == 60


def test_a_seed_that_is_no_seed_stops_the_start(
    conformance_loaded: str, issuer: TestIssuer, tmp_path: Path
) -> None:
    path = tmp_path / "time-types.json"
    path.write_text(json.dumps({"description": "", "care_units": [{"care_unit": "x"}]}))
    settings = Settings(
        hapi_url=conformance_loaded,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        time_types_seed=path,
        **issuer.settings(),
    )

    with pytest.raises(ValueError, match="unit_name"):
        create_app(settings)


def test_a_seed_with_unknown_care_guarantee_steps_stops_the_start_naming_each(
    conformance_loaded: str, issuer: TestIssuer, tmp_path: Path
) -> None:
    seed = load_data("booking/seed.json", unit=unique_hsa_id())
    kind = seed["care_units"][0]["time_types"][0]
    seed["care_units"][0]["time_types"].append(kind | {"code": "second-visit"})
    for kind in seed["care_units"][0]["time_types"]:
        kind["care_guarantee_step"] = "third-opinion"
    path = tmp_path / "time-types.json"
    path.write_text(json.dumps(seed), encoding="utf-8")
    settings = Settings(
        hapi_url=conformance_loaded,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        time_types_seed=path,
        **issuer.settings(),
    )

    with pytest.raises(ValueError, match="third-opinion") as refused:
        create_app(settings)
    assert "/physio-visit: unknown care-guarantee step" in str(refused.value)
    assert "/second-visit: unknown care-guarantee step" in str(refused.value)
