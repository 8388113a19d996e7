"""The time-type catalogue against the real HAPI: a definition is written and read back."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fhir_service.booking import TimeTypeCatalogue
from fhir_service.contract import Identifier, IdentifierKind
from fhir_service.fhir import HapiClient, SearchResult
from fhir_service.mapping import Author
from fhir_service.mapping.time_types import DefinedTimeType
from fhir_service.metrics import Metrics
from fhir_service.security import Compartment
from fhir_service.store import Change
from tests.support import unique_hsa_id
from tests.time_types import seed_catalogue


class _CountingHapi(HapiClient):
    """HAPI's client, counting the searches of each type."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, Metrics(), timeout=60)
        self.searches: Counter[str] = Counter()

    async def search(self, resource_type: str, *args: Any, **kwargs: Any) -> SearchResult:
        self.searches[resource_type] += 1
        return await super().search(resource_type, *args, **kwargs)


async def test_a_definition_is_read_back_with_the_catalogue_in_one_read(hapi: HapiClient) -> None:
    counting = _CountingHapi(hapi.base_url)
    catalogue = TimeTypeCatalogue(counting)
    clinic = seed_catalogue().units[0]
    unit = clinic.unit.model_copy(
        update={"identifier": Identifier(kind=IdentifierKind.HSA_ID, value=unique_hsa_id())}
    )
    kind = clinic.time_types[0]
    by = Change(Author(("tests", "someone")), Compartment(organization=unit.identifier))

    defined = await catalogue.define(DefinedTimeType(unit, clinic.time_zone, kind), "sv", by)
    await counting.aclose()

    # One search for what was there before, one for the catalogue with it: not a third.
    assert counting.searches == {"HealthcareService": 2}
    assert defined.before is None
    assert defined.resource["resourceType"] == "HealthcareService"
    assert defined.resource["meta"]["versionId"] == "1"
    assert defined.kind == kind
