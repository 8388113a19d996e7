"""The caller's webhooks: theirs alone, reaching only what their token reaches, and a filter
outside their walls refused and recorded, not accepted to stay silent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_service import servicedb
from fhir_service.contract import Identifier, IdentifierKind
from fhir_service.errors import RecordNotFoundError
from fhir_service.mapping import system_of
from fhir_service.records import CallerWebhooks
from fhir_service.security import AccessDeniedError, Compartment, Denial, Requirement
from fhir_service.sync import InvalidWebhookError, TargetPolicy
from fhir_service.sync.webhook_registrations import Reach, WebhookRegistry
from tests.fhir_service.records.support import RecordedWitness, access_within
from tests.support import unique_hsa_id, unique_personnummer

URL = "http://127.0.0.1:9/hooks"
SECRET = "a-secret-of-at-least-24-characters"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[WebhookRegistry]:
    engine = servicedb.make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    servicedb.migrate(engine)
    yield WebhookRegistry(engine, TargetPolicy(allow_http=True, allow_private_networks=True))
    engine.dispose()


def _patient() -> Identifier:
    return Identifier(kind=IdentifierKind.PERSONNUMMER, value=unique_personnummer())


def _caller(
    registry: WebhookRegistry, walls: Compartment, owner: str
) -> tuple[CallerWebhooks, RecordedWitness]:
    seen = RecordedWitness()
    access = access_within(walls, Requirement("Subscription", "c"))
    return CallerWebhooks(access, seen, owner, registry), seen


async def test_a_filter_naming_another_patient_is_refused_and_recorded(
    registry: WebhookRegistry,
) -> None:
    mine = _patient()
    webhooks, seen = _caller(registry, Compartment(patient=mine), "patient-app")

    with pytest.raises(AccessDeniedError):
        await webhooks.register(URL, SECRET, patient=_patient(), care_unit=None, description=None)

    assert seen.refusals == [Denial.OUTSIDE_COMPARTMENT.value]
    assert await webhooks.all() == []


async def test_an_organization_is_no_patient_and_a_person_no_care_unit(
    registry: WebhookRegistry,
) -> None:
    unit = Identifier(kind=IdentifierKind.HSA_ID, value=unique_hsa_id())
    webhooks, _ = _caller(registry, Compartment(organization=unit), "ehr")

    with pytest.raises(InvalidWebhookError, match="patient must be"):
        await webhooks.register(URL, SECRET, patient=unit, care_unit=None, description=None)
    with pytest.raises(InvalidWebhookError, match="careUnit must be"):
        await webhooks.register(URL, SECRET, patient=None, care_unit=_patient(), description=None)

    assert await webhooks.all() == []


async def test_a_webhook_is_its_registrants_and_reaches_what_their_token_reaches(
    registry: WebhookRegistry,
) -> None:
    unit = Identifier(kind=IdentifierKind.HSA_ID, value=unique_hsa_id())
    walls = Compartment(organization=unit)
    mine, _ = _caller(registry, walls, "ehr-a")
    theirs, _ = _caller(registry, walls, "ehr-b")

    registered = await mine.register(URL, SECRET, patient=None, care_unit=None, description="ours")

    assert [r.id for r in await mine.all()] == [registered.id]
    assert (await mine.get(registered.id)).description == "ours"
    assert await theirs.all() == []
    with pytest.raises(RecordNotFoundError):
        await theirs.get(registered.id)
    with pytest.raises(RecordNotFoundError):
        await theirs.remove(registered.id)
    [row] = registry.list()
    assert (row.id, row.owner) == (registered.id, "ehr-a")
    assert row.reach == Reach(patient=None, responsible_unit=f"{system_of(unit)}|{unit.value}")
    await mine.remove(registered.id)
    assert await mine.all() == []
