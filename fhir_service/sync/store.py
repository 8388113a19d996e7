"""The contract store: contracts kept in HAPI, written whole, never over a newer version.

Every write is one transaction Bundle. Creating writes the contract's records as conditional
creates, so two creators of one contract end with one CarePlan (HAPI refuses the loser with 409
or finds the winner's records; either way the loser learns the contract exists). Every later write
names the version it was based on; a stale one fails whole with :class:`StaleVersionError`.
Contents change only while a contract is a draft or under revision; status changes go through the
lifecycle (``revise``, ``agree``, ``complete``, ``end``, ``revoke``).

Reading one contract is one search (with includes), plus one per further page for very large ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_service.contract import Agreement, Contract, ContractStatus, lifecycle
from fhir_service.fhir import ConflictError, HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import READ_PARAMS, contract_from_bundle
from fhir_service.mapping.tables import Language
from fhir_service.mapping.to_fhir import contract_to_bundle

__all__ = [
    "ContractExistsError",
    "ContractNotEditableError",
    "ContractNotFoundError",
    "ContractStore",
    "StaleVersionError",
]

_EDITABLE = frozenset({ContractStatus.DRAFT, ContractStatus.REVISED})


class ContractNotFoundError(LookupError):
    """No contract has that id."""

    def __init__(self, contract_id: str) -> None:
        super().__init__(f"no contract {contract_id!r}")
        self.contract_id = contract_id


class ContractExistsError(Exception):
    """A contract with that id exists already; ``version`` is its current version."""

    def __init__(self, contract_id: str, version: int) -> None:
        super().__init__(f"contract {contract_id!r} exists already (version {version})")
        self.contract_id = contract_id
        self.version = version


class StaleVersionError(Exception):
    """The write was based on ``expected``, but the contract is at ``current`` now."""

    def __init__(self, contract_id: str, expected: int | None, current: int) -> None:
        super().__init__(
            f"contract {contract_id!r} is at version {current}, not {expected}: read it again"
        )
        self.contract_id = contract_id
        self.expected = expected
        self.current = current


class ContractNotEditableError(Exception):
    """Only drafts and contracts under revision change their contents."""

    def __init__(self, contract_id: str, status: ContractStatus) -> None:
        super().__init__(
            f"contract {contract_id!r} is {status}: revise it before changing its contents"
            if status is ContractStatus.AGREED
            else f"contract {contract_id!r} is {status}: its contents no longer change"
        )
        self.contract_id = contract_id
        self.status = status


class ContractStore:
    """Create, read, change and move contracts through their lifecycle, in HAPI."""

    def __init__(self, hapi: HapiClient, language: Language = "sv") -> None:
        self.hapi = hapi
        self.language = language

    async def read(self, contract_id: str) -> Contract:
        """The contract as stored, with its current version."""
        contract, _ = await self._stored(contract_id)
        return contract

    async def create(self, contract: Contract) -> Contract:
        """Store a new contract; :class:`ContractExistsError` if its id is taken."""
        bundle = contract_to_bundle(contract, self.language, new=True)
        try:
            response = await self.hapi.transaction(bundle, idempotent=True)
        except ConflictError:
            # Lost a race on HAPI's unique match URL: the winner's contract is there now.
            current = await self.read(contract.id)
            raise ContractExistsError(contract.id, _version(current)) from None
        status, version = _careplan_outcome(response)
        if not status.startswith("201"):
            raise ContractExistsError(contract.id, version)
        return contract.model_copy(update={"version": version})

    async def update(self, contract: Contract, expected_version: int) -> Contract:
        """Replace the contents of a draft or a contract under revision."""
        current, careplan_id = await self._stored(contract.id)
        self._check(current, expected_version)
        if current.status not in _EDITABLE:
            raise ContractNotEditableError(contract.id, current.status)
        if contract.status is not current.status:
            raise ValueError(
                f"status changes go through the lifecycle, not an update to {contract.status}"
            )
        return await self._write(contract, current, careplan_id)

    async def revise(self, contract_id: str, expected_version: int) -> Contract:
        """Open an agreed contract for revision."""
        return await self._transition(contract_id, expected_version, lifecycle.revise)

    async def agree(
        self, contract_id: str, expected_version: int, agreements: tuple[Agreement, ...]
    ) -> Contract:
        """Record the patient's and the responsible clinician's agreement to this version."""
        return await self._transition(
            contract_id, expected_version, lambda c: lifecycle.agree(c, agreements)
        )

    async def complete(self, contract_id: str, expected_version: int) -> Contract:
        """The contract has done its job."""
        return await self._transition(contract_id, expected_version, lifecycle.complete)

    async def end(self, contract_id: str, expected_version: int) -> Contract:
        """The contract stops before it is done."""
        return await self._transition(contract_id, expected_version, lifecycle.end)

    async def revoke(self, contract_id: str, expected_version: int) -> Contract:
        """The contract is withdrawn."""
        return await self._transition(contract_id, expected_version, lifecycle.revoke)

    async def _transition(
        self, contract_id: str, expected_version: int, step: Callable[[Contract], Contract]
    ) -> Contract:
        current, careplan_id = await self._stored(contract_id)
        self._check(current, expected_version)
        return await self._write(step(current), current, careplan_id)

    def _check(self, current: Contract, expected_version: int) -> None:
        if current.version != expected_version:
            raise StaleVersionError(current.id, expected_version, _version(current))

    async def _stored(self, contract_id: str) -> tuple[Contract, str]:
        params = [("identifier", f"{urls.ID_CONTRACT}|{contract_id}"), *READ_PARAMS]
        result = await self.hapi.search("CarePlan", params)
        careplans = result.matches()
        if not careplans:
            raise ContractNotFoundError(contract_id)
        contract = contract_from_bundle(result.as_bundle(), contract_id)
        return contract, str(careplans[0]["id"])

    async def _write(self, new: Contract, current: Contract, careplan_id: str) -> Contract:
        bundle = contract_to_bundle(new, self.language, if_version=(careplan_id, _version(current)))
        bundle["entry"] += _removals(current, new)
        try:
            response = await self.hapi.transaction(bundle, idempotent=True)
        except ConflictError:
            latest = await self.read(new.id)
            raise StaleVersionError(new.id, current.version, _version(latest)) from None
        _, version = _careplan_outcome(response)
        return new.model_copy(update={"version": version})


def _removals(current: Contract, new: Contract) -> list[dict[str, Any]]:
    # Records the new version no longer has are deleted in the same transaction (HAPI checks
    # references after the CarePlan and CareTeams stop pointing at them).
    gone: list[tuple[str, str, str]] = []
    owned: list[tuple[str, str, set[str], set[str]]] = [
        ("Goal", urls.ID_GOAL, {g.key for g in current.goals}, {g.key for g in new.goals}),
        (
            "Appointment",
            urls.ID_AGREED_TIME,
            {t.key for t in current.agreed_times},
            {t.key for t in new.agreed_times},
        ),
        (
            "RelatedPerson",
            urls.ID_RELATED_PERSON,
            {r.key for r in current.relatives},
            {r.key for r in new.relatives},
        ),
    ]
    for kind, system, before, after in owned:
        gone += [(kind, system, f"{current.id}/{key}") for key in sorted(before - after)]
    gone += [
        ("CareTeam", urls.ID_CARE_TEAM, f"{current.id}/care-contact/{i}")
        for i in range(len(new.care_contacts), len(current.care_contacts))
    ]
    return [
        {"request": {"method": "DELETE", "url": f"{kind}?identifier={system}|{value}"}}
        for kind, system, value in gone
    ]


def _careplan_outcome(response: dict[str, Any]) -> tuple[str, int]:
    for entry in response.get("entry", []):
        answer = entry.get("response", {})
        location = str(answer.get("location", ""))
        if location.startswith("CarePlan/"):
            return str(answer.get("status", "")), int(location.rsplit("/_history/", 1)[1])
    raise ValueError("the transaction response names no CarePlan")


def _version(contract: Contract) -> int:
    if contract.version is None:
        raise ValueError(f"contract {contract.id!r} was read without a version")
    return contract.version
