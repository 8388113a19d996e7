"""The record versions this instance wrote itself, each with whom its contract concerns.

The change feed tells webhooks of a change by whom its contract concerns (its patient, the care
units taking part, the responsible one), and learns that by reading the contract from HAPI. For a
change the service made itself, the contract was in hand when HAPI answered the write: whom it
concerns is kept here by the versions HAPI gave its records, and spares the feed that read (under
load, most of the requests the service sent HAPI beyond its clients' own). Only the newest writes
are kept, and only in this process; a change not found here (made by another writer, another
instance, or long ago) is routed by reading, as before.

Whom, not the contract: a few strings a write. Kept whole, the contracts of the last 4,096
versions were some 70,000 objects, each scanned in every full pass of the garbage collector,
while every request waited.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fhir_service.contract import Contract, Identifier
from fhir_service.mapping.identifier_systems import system_of

__all__ = ["Concerned", "OwnWrites", "concerned"]

Key = tuple[str, str, str]
"""Resource type, id and version, as the change feed names a change."""


@dataclass(frozen=True, slots=True)
class Concerned:
    """Whom a contract concerns: ``system|value`` tokens (the form webhook filters use) of its
    patient's identifier, of each care unit taking part and of the responsible one."""

    contract_id: str
    patients: frozenset[str]
    care_units: frozenset[str]
    responsible_unit: str


def concerned(contract: Contract) -> Concerned:
    """Whom ``contract`` concerns: its patient, and every unit named in it."""
    organizations = [contract.responsible_unit]
    organizations += [p.organization for p in contract.professionals]
    organizations += [c.professional.organization for c in contract.care_contacts]
    organizations += [a.organization for a in contract.activities if a.organization is not None]
    organizations += [t.organization for t in contract.agreed_times]
    return Concerned(
        contract.id,
        frozenset({_token(contract.patient.identifier)}),
        frozenset(_token(o.identifier) for o in organizations),
        _token(contract.responsible_unit.identifier),
    )


class OwnWrites:
    """The last ``most`` record versions written through this instance, and whom their
    contracts concern."""

    def __init__(self, most: int = 4096) -> None:
        self.most = most
        self._concerned: OrderedDict[Key, Concerned] = OrderedDict()

    def wrote(self, contract: Contract, response: dict[str, Any]) -> None:
        """Note the versions HAPI's transaction ``response`` gave the records of ``contract``."""
        whom = concerned(contract)
        for entry in response.get("entry") or []:
            answer = entry.get("response") if isinstance(entry, dict) else None
            key = _key_of(answer.get("location") if isinstance(answer, dict) else None)
            if key is None:
                continue
            self._concerned[key] = whom
            self._concerned.move_to_end(key)
        while len(self._concerned) > self.most:
            self._concerned.popitem(last=False)

    def concerned_by(self, key: Key) -> Concerned | None:
        """Whom the contract concerns that the version ``key`` was written for here, if it was
        and is still kept."""
        return self._concerned.get(key)


def _token(identifier: Identifier) -> str:
    return f"{system_of(identifier)}|{identifier.value}"


def _key_of(location: object) -> Key | None:
    """``Type/id/_history/version`` (relative or absolute, as HAPI answers) as a key."""
    if not isinstance(location, str):
        return None
    parts = location.rstrip("/").split("/")
    if len(parts) < 4 or parts[-2] != "_history":
        return None
    resource_type, resource_id, _, version = parts[-4:]
    return resource_type, resource_id, version
