"""The running service, as the web layer gets it: its parts built from the settings, the
caller's services bound to them, readiness said per dependency, and everything let go."""

from __future__ import annotations

from pathlib import Path

from fhir_service.mapping import Author
from fhir_service.metrics import Metrics
from fhir_service.records import CallerContracts
from fhir_service.security import Compartment, Requirement
from fhir_service.service import Check, Service
from fhir_service.settings import Settings
from fhir_service.store import Change
from tests.fhir_service.records.support import RecordedWitness, access_within
from tests.support import free_port


def _settings(tmp_path: Path, hapi_url: str) -> Settings:
    return Settings(
        hapi_url=hapi_url, auth_local_issuer=True, data_dir=tmp_path, ready_timeout_seconds=2
    )


async def test_readiness_says_which_dependency_is_down_and_why(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/fhir"
    service = Service(_settings(tmp_path, nowhere), Metrics())
    try:
        checks = await service.readiness()
    finally:
        await service.aclose()

    assert checks["hapi"].up is False
    assert "HAPI FHIR server" in (checks["hapi"].detail or "")
    # Nothing has run the migrations: the database answers, but is not ready to be written.
    assert checks["database"] == Check(up=False, detail="service database: schema not migrated yet")
    assert checks["profiles"].up is False


async def test_each_callers_contracts_are_bound_to_their_walls_and_their_own_keys(
    tmp_path: Path, conformance_loaded: str
) -> None:
    service = Service(_settings(tmp_path, conformance_loaded), Metrics())
    walls = Compartment()
    access = access_within(walls, Requirement("CarePlan", "r"))
    witness = RecordedWitness()
    try:
        contracts = service.contracts(
            access, witness, lambda: Change(Author(("i", "s")), walls), "caller-a"
        )
        checks = await service.readiness()
    finally:
        await service.aclose()

    assert isinstance(contracts, CallerContracts)
    assert (contracts.access, contracts.witness, contracts.store) == (
        access,
        witness,
        service.store,
    )
    assert (contracts.replays.caller, contracts.replays.owner) == ("caller-a", service.instance.id)
    assert checks["hapi"] == Check(up=True)
