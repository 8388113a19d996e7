"""What the change-feed tests share: the records of a contract the feed watches."""

from __future__ import annotations

from fhir_service.fhir import HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import READ_PARAMS
from fhir_service.sync.changes import WATCHED_TYPES

__all__ = ["watched_records"]


async def watched_records(hapi: HapiClient, contract_id: str) -> set[tuple[str, str, str]]:
    """Type, id and version of each record of the contract that the feed watches."""
    params = [("identifier", f"{urls.ID_CONTRACT}|{contract_id}"), *READ_PARAMS]
    resources = (await hapi.search("CarePlan", params)).resources
    return {
        (r["resourceType"], r["id"], r["meta"]["versionId"])
        for r in resources
        if r["resourceType"] in WATCHED_TYPES
    }
