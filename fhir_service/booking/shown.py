"""What of the stored contracts a caller of the booking facade is shown: the one way its routes
and operations read contracts, so that none of them can forget a wall.

A contract outside the caller's walls (`Compartment`) is not there for them. Within them, a caller
walled to a patient or to a care unit is shown what `fhir_service.contract.disclosure.disclose`
says: all of it for the responsible unit; for the patient no draft and nothing labelled restricted
or very restricted. What is withheld is not there either: a withheld contract or agreed time is
not found, exactly like one that does not exist, so it is never listed, judged against the care
guarantee, booked, cancelled or rebooked, and no answer says anything of it. A grant without
walls (a booking platform, which books for every clinic) is shown everything, as the FHIR
endpoint's guard shows it.

Writers look an agreed time up in the contract as shown and write the contract as stored: what a
caller cannot see they cannot change, and what they cannot see is never dropped from a write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from fhir_service.contract import AgreedTime, Contract, Identifier
from fhir_service.contract.disclosure import WITHHELD, disclose
from fhir_service.errors import RecordNotFoundError
from fhir_service.security.access import Compartment, Denial
from fhir_service.store import (
    MAX_SEARCH_COUNT,
    ContractNotFoundError,
    ContractStore,
    StoredContract,
)

__all__ = ["AgreedTimeNotFoundError", "NotShownError", "Shown", "ShownContracts", "shown"]


class NotShownError(ContractNotFoundError):
    """The contract exists, but the caller is shown none of it: answered as not found.

    ``contract`` (as stored) and ``reason`` are for the audit trail, which says what happened.
    """

    def __init__(self, contract: Contract, reason: str) -> None:
        super().__init__(contract.id)
        self.contract = contract
        self.reason = reason


class AgreedTimeNotFoundError(RecordNotFoundError, LookupError):
    """The contract shows the caller no agreed time of that key: it has none, or withholds it.

    The message is the same either way. ``contract`` (as shown) and ``reason`` (None when there
    is no such time at all) are for the audit trail.
    """

    def __init__(self, contract: Contract, key: str, reason: str | None) -> None:
        super().__init__(f"contract {contract.id!r} has no agreed time {key!r}")
        self.contract = contract
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Shown:
    """A contract as stored, to write it, and as the caller may see it, for everything else."""

    stored: StoredContract
    contract: Contract

    def time(self, key: str) -> AgreedTime:
        """The agreed time ``key`` as the caller may see it; `AgreedTimeNotFoundError` if none."""
        time = next((t for t in self.contract.agreed_times if t.key == key), None)
        if time is not None:
            return time
        held = any(t.key == key for t in self.stored.contract.agreed_times)
        raise AgreedTimeNotFoundError(self.contract, key, WITHHELD if held else None)


def shown(contract: Contract, walls: Compartment) -> Contract | None:
    """What of ``contract`` a caller within ``walls`` may see; None when nothing."""
    if not walls.allows(contract):
        return None
    if walls.patient is None and walls.organization is None:
        return contract
    return disclose(contract, walls.organization).contract


class ShownContracts:
    """The contract store as one caller, within ``walls``, sees it."""

    def __init__(self, store: ContractStore, walls: Compartment) -> None:
        self.store = store
        self.walls = walls

    async def read(self, contract_id: str) -> Shown:
        """The contract as stored and as shown, with its records for a writer.

        Raises `NotShownError` when the caller is shown none of it, and the store's
        ``ContractNotFoundError`` when there is no such contract.
        """
        stored = await self.store.records(contract_id)
        contract = shown(stored.contract, self.walls)
        if contract is None:
            inside = self.walls.allows(stored.contract)
            reason = WITHHELD if inside else Denial.OUTSIDE_COMPARTMENT.value
            raise NotShownError(stored.contract, reason)
        return Shown(stored, contract)

    async def of_patient(self, patient: Identifier, status: tuple[str, ...]) -> list[Contract]:
        """``patient``'s contracts in these statuses as shown, leaving out those not shown."""
        stored = await self.store.all_of(patient, status)
        found = (shown(c, self.walls) for c in stored.contracts)
        return [c for c in found if c is not None]

    async def of_unit(self, unit: Identifier, status: tuple[str, ...]) -> AsyncIterator[Contract]:
        """The contracts ``unit`` is responsible for, in these statuses, as shown, a HAPI page
        at a time; only the caller's patient's when the caller is walled to one."""
        cursor = None
        while True:
            page = await self.store.search(
                patient=self.walls.patient,
                care_unit=unit,
                status=status,
                count=MAX_SEARCH_COUNT,
                cursor=cursor,
            )
            for contract in page.contracts:
                seen = shown(contract, self.walls)
                if seen is not None:
                    yield seen
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
