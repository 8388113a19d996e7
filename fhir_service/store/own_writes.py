"""The record versions this instance wrote itself, each with the contract it wrote them for.

The change feed tells webhooks of a change by the contract it belongs to, and learns who that
contract concerns by reading the contract from HAPI. For a change the service made itself, the
contract was in hand when HAPI answered the write: kept here by the versions HAPI gave its records,
it spares the feed that read (under load, most of the requests the service sent HAPI beyond its
clients' own). Only the newest writes are kept, and only in this process; a change not found here
(made by another writer, another instance, or long ago) is routed by reading, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from fhir_service.contract import Contract

__all__ = ["OwnWrites"]

Key = tuple[str, str, str]
"""Resource type, id and version, as the change feed names a change."""


class OwnWrites:
    """The last ``most`` record versions written through this instance, and their contracts."""

    def __init__(self, most: int = 4096) -> None:
        self.most = most
        self._contracts: OrderedDict[Key, Contract] = OrderedDict()

    def wrote(self, contract: Contract, response: dict[str, Any]) -> None:
        """Note the versions HAPI's transaction ``response`` gave the records of ``contract``."""
        for entry in response.get("entry") or []:
            answer = entry.get("response") if isinstance(entry, dict) else None
            key = _key_of(answer.get("location") if isinstance(answer, dict) else None)
            if key is None:
                continue
            self._contracts[key] = contract
            self._contracts.move_to_end(key)
        while len(self._contracts) > self.most:
            self._contracts.popitem(last=False)

    def contract_of(self, key: Key) -> Contract | None:
        """The contract the version ``key`` was written for here, if it was and is still kept."""
        return self._contracts.get(key)


def _key_of(location: object) -> Key | None:
    """``Type/id/_history/version`` (relative or absolute, as HAPI answers) as a key."""
    if not isinstance(location, str):
        return None
    parts = location.rstrip("/").split("/")
    if len(parts) < 4 or parts[-2] != "_history":
        return None
    resource_type, resource_id, _, version = parts[-4:]
    return resource_type, resource_id, version
