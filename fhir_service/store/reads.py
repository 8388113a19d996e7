"""Reading contracts from HAPI: `ContractReads`, the ground floor of
`fhir_service.store.contracts.ContractStore`.

Reading one contract is one search (with includes), plus one per further page for very large
ones. Searching is one request per page of whole contracts (see `ContractReads.search`). A
contract whose stored records no longer read as one is `StoredContractUnreadableError` when read
alone, and left out of a search page, named.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from fhir_service.contract import Contract, Identifier, Organization, OrganizationKind
from fhir_service.fhir import HapiClient, InvalidRequestError, NotFoundError
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import (
    READ_PARAMS,
    UnreadableContractError,
    contract_from_bundle,
)
from fhir_service.mapping.identifier_systems import system_of
from fhir_service.mapping.provenance import Author
from fhir_service.mapping.tables import Language, code_table
from fhir_service.security.access import Compartment
from fhir_service.store import search as search_criteria
from fhir_service.store.errors import (
    ContractNotFoundError,
    OutsideCompartmentError,
    StoredContractUnreadableError,
    TooManyContractsError,
)
from fhir_service.store.mapped import MappedContracts, ReadBundle
from fhir_service.store.search import IdentifierQuery, InvalidSearchError

__all__ = [
    "MAX_SEARCH_COUNT",
    "Change",
    "ContractPage",
    "ContractReads",
    "StoredContract",
    "version_of",
]

_log = logging.getLogger(__name__)
_IDS_AT_ONCE = 50
"""How many ids one ``_id`` search asks HAPI about."""

MAX_SEARCH_COUNT = 50
"""The most contracts on one page of a search.

HAPI 8.8 stops loading included resources once a page has about 1000 of them, and says nothing
(hapi/README.md). A contract brings some 10 to 25, so 50 contracts usually fit; a contract that
lost records to the cap is read alone.
"""


@dataclass(frozen=True, slots=True)
class Change:
    """Who changes a contract, and the compartment their grant reaches.

    A change to a contract outside ``compartment`` fails as if the contract were not there
    (:class:`OutsideCompartmentError`); one that would move it out fails with
    ``AccessDeniedError``. ``author`` is named in the change's Provenance.
    """

    author: Author
    compartment: Compartment


@dataclass(frozen=True)
class ContractPage:
    """One page of a search: whole contracts with their versions, oldest first.

    ``unreadable`` names the contracts that matched but whose stored records no longer read as
    a contract (changed in HAPI by another system): they are left out, not allowed to fail the
    page, and named so that the reader can tell, and an operator mend them.
    """

    contracts: tuple[Contract, ...]
    next_cursor: str | None = None
    unreadable: tuple[str, ...] = ()

    @property
    def has_more(self) -> bool:
        """Whether another page follows; pass ``next_cursor`` to the same search to read it."""
        return self.next_cursor is not None


@dataclass(frozen=True, slots=True)
class StoredContract:
    """A contract as stored: the contract, the search Bundle of its records, its CarePlan's id."""

    contract: Contract
    bundle: dict[str, Any]
    careplan_id: str


class ContractReads:
    """Read, search and look up contracts and the records they share, in HAPI."""

    def __init__(self, hapi: HapiClient, language: Language = "sv") -> None:
        self.hapi = hapi
        self.language = language
        self.mapped = MappedContracts()
        """The contracts read lately, by the answers they were read from."""

    async def read(self, contract_id: str) -> Contract:
        """The contract as stored, with its current version."""
        return (await self._search_one(contract_id, None, sent=False)).contract

    async def records(self, contract_id: str, by: Change | None = None) -> StoredContract:
        """The contract with the FHIR records it is stored as, read in one search.

        For writers that change one record: they replace it among the others and read the
        contract again from the result. With ``by``, a contract outside its compartment raises
        :class:`OutsideCompartmentError`.
        """
        return await self._search_one(contract_id, by)

    async def search(
        self,
        *,
        patient: IdentifierQuery | None = None,
        status: str | Iterable[str] | None = None,
        care_unit: IdentifierQuery | None = None,
        care_contact: IdentifierQuery | None = None,
        period_from: date | None = None,
        period_to: date | None = None,
        count: int = 20,
        cursor: str | None = None,
    ) -> ContractPage:
        """The contracts that match every criterion given, ``count`` to a page.

        - ``patient``: the patient's personnummer, samordningsnummer, fødselsnummer or D-nummer.
        - ``status``: a :class:`ContractStatus`, or several of which any may match.
        - ``care_unit``: the unit the contract belongs to (HSA-id or organisasjonsnummer), which
          is the organization of its responsible clinician (``CarePlan.author``, a
          PractitionerRole). Units that take part only through activities, agreed times or care
          contacts do not count: each unit keeps its own contract with the patient.
        - ``care_contact``: the professional (HSA-id or HPR-nummer) who is the patient's fast
          vårdkontakt or personlig koordinator in the contract, whatever the period of that
          role; being only a member of the care team does not count.
        - ``period_from``, ``period_to``: the contract's period overlaps these days, both
          included; leave one out for a range open at that side. A period without an end runs
          on, one without a start has always run; a contract without a period matches no
          period criterion.

        Pages hold whole contracts at their current versions, in the order the contracts were
        created, and each takes one HAPI request (rarely more, see :data:`MAX_SEARCH_COUNT`).
        ``cursor`` is a page's ``next_cursor`` and continues the search with the same criteria.
        Paging is by position: contracts created meanwhile come at the end, but one that stops
        matching between two pages moves the rest forward, so the next page misses one.

        Raises :class:`InvalidSearchError` (a ``ValueError``) for an invalid identifier or one of
        the wrong kind, an unknown status, a period that ends before it starts, a count outside
        1 to :data:`MAX_SEARCH_COUNT`, or a cursor of another search; HAPI is not asked then.
        """
        criteria = search_criteria.criteria(
            patient, status, care_unit, care_contact, period_from, period_to
        )
        if not 1 <= count <= MAX_SEARCH_COUNT:
            raise InvalidSearchError(f"count: {count} is not between 1 and {MAX_SEARCH_COUNT}")
        offset = search_criteria.offset_of(cursor, criteria)
        # _pid (HAPI's own row id) orders by creation: stable for offset paging and cheap to sort.
        paging = [("_sort", "_pid"), ("_count", str(count)), ("_offset", str(offset))]
        result = await self.hapi.search("CarePlan", [*criteria, *paging, *READ_PARAMS], max_pages=1)
        page = self.mapped.of(result.as_bundle())
        contracts: list[Contract] = []
        unreadable: list[str] = []
        for careplan in result.matches():
            contract_id = search_criteria.contract_id_of(careplan)
            try:
                contracts.append(await self._from_page(page, contract_id))
            except StoredContractUnreadableError as exc:
                _log.warning(
                    "a stored contract is unreadable; the search leaves it out",
                    extra={"contract_id": contract_id, "reason": str(exc)},
                )
                unreadable.append(contract_id)
        # With one page read, "truncated" means HAPI linked a next one; it does so only when
        # more matches exist (an exactly full last page has no next link).
        following = (
            search_criteria.cursor_for(offset + count, criteria) if result.truncated else None
        )
        return ContractPage(tuple(contracts), following, tuple(unreadable))

    async def all_of(
        self, patient: IdentifierQuery, status: Iterable[str], *, limit: int = 500
    ) -> ContractPage:
        """Every contract of ``patient`` in one of these statuses, oldest first, as one page
        (which names the unreadable ones too).

        One HAPI request per :data:`MAX_SEARCH_COUNT` contracts; a patient has a handful. More
        than ``limit`` is taken for a fault (or an attack) and raises
        :class:`TooManyContractsError` rather than reading on.
        """
        contracts: list[Contract] = []
        unreadable: list[str] = []
        cursor = None
        while True:
            page = await self.search(
                patient=patient, status=status, count=MAX_SEARCH_COUNT, cursor=cursor
            )
            contracts += page.contracts
            unreadable += page.unreadable
            if page.next_cursor is None:
                return ContractPage(tuple(contracts), unreadable=tuple(unreadable))
            if len(contracts) >= limit:
                raise TooManyContractsError(limit)
            cursor = page.next_cursor

    async def known_as(
        self, identifiers: Iterable[tuple[str, str]], unit: Identifier | None
    ) -> str | None:
        """The id of the contract whose CarePlan carries one of ``identifiers`` (system,
        value): a sender's own identifiers of its plan find the contract it became. With
        ``unit``, only among that care unit's contracts: another unit's plan that happens to
        carry the same identifier is not this one."""
        unit_of = search_criteria.UNIT_OF_CONTRACT
        within = [] if unit is None else [unit_of, f"{system_of(unit)}|{unit.value}"]
        for system, value in identifiers:
            params = [("identifier", f"{system}|{value}"), ("_elements", "identifier")]
            if within:
                params.append((within[0], within[1]))
            found = await self.hapi.search("CarePlan", [*params, ("_count", "1")], max_pages=1)
            for careplan in found.matches():
                if any(i.get("system") == urls.ID_CONTRACT for i in careplan.get("identifier", [])):
                    return search_criteria.contract_id_of(careplan)
        return None

    async def unheld(self, references: Iterable[str]) -> set[str]:
        """Which of ``references`` (``Type/id``) name no record HAPI holds: a client's Bundle
        referring to them could not be written."""
        by_type: dict[str, set[str]] = {}
        for reference in references:
            kind, _, record_id = reference.partition("/")
            by_type.setdefault(kind, set()).add(record_id)
        unheld = set()
        for kind, ids in sorted(by_type.items()):
            ordered = sorted(ids)
            for start in range(0, len(ordered), _IDS_AT_ONCE):
                wanted = ordered[start : start + _IDS_AT_ONCE]
                params = [("_id", ",".join(wanted)), ("_elements", "id")]
                try:
                    found = await self.hapi.search(
                        kind, [*params, ("_count", str(len(wanted)))], max_pages=1
                    )
                except (InvalidRequestError, NotFoundError):
                    held: set[str] = set()  # not a type HAPI knows
                else:
                    held = {str(r.get("id")) for r in found.matches()}
                unheld |= {f"{kind}/{i}" for i in set(wanted) - held}
        return unheld

    async def unit(self, identifier: Identifier) -> Organization:
        """The care unit ``identifier`` names, as the contracts it took part in wrote it; a
        unit no contract named yet is called by its identifier."""
        token = f"{system_of(identifier)}|{identifier.value}"
        found = await self.hapi.search(
            "Organization", [("identifier", token), ("_count", "1")], max_pages=1
        )
        kinds = code_table("organization-kind")
        for organization in found.matches():
            codes = [
                c.get("code")
                for t in organization.get("type", [])
                for c in t.get("coding", [])
                if c.get("system") == kinds.system and c.get("code") in kinds.names
            ]
            name = organization.get("name")
            if codes and isinstance(name, str) and name.strip():
                return Organization(identifier=identifier, name=name, kind=codes[0])
        return Organization(
            identifier=identifier, name=identifier.value, kind=OrganizationKind.CARE_UNIT
        )

    async def wrote(self, write_key: str) -> bool:
        """Whether a change tagged with ``write_key`` (see ``Author.write_key``) was stored."""
        params = [("_tag", f"{urls.TAG_WRITE_KEY}|{write_key}"), ("_count", "1")]
        found = await self.hapi.search("Provenance", [*params, ("_elements", "id")], max_pages=1)
        return bool(found.matches())

    async def stored_records(self, contract_id: str) -> dict[str, Any]:
        """The search Bundle of the contract's records as HAPI holds them, whether or not they
        still read as a contract: for those who must act on a contract that does not (the change
        feed routes its changes by them). :class:`ContractNotFoundError` without a CarePlan.
        """
        return (await self._records_of(contract_id))[0]

    async def _records_of(self, contract_id: str) -> tuple[dict[str, Any], str]:
        params = [("identifier", f"{urls.ID_CONTRACT}|{contract_id}"), *READ_PARAMS]
        result = await self.hapi.search("CarePlan", params)
        careplans = result.matches()
        if not careplans:
            raise ContractNotFoundError(contract_id)
        return result.as_bundle(), str(careplans[0]["id"])

    async def _search_one(
        self, contract_id: str, by: Change | None, *, sent: bool = True
    ) -> StoredContract:
        bundle, careplan_id = await self._records_of(contract_id)
        try:
            if sent:
                contract = contract_from_bundle(bundle, contract_id, sent=True)
            else:
                contract = self.mapped.of(bundle).contract(contract_id)
        except UnreadableContractError as exc:
            raise StoredContractUnreadableError(contract_id, exc) from exc
        if by is not None and not by.compartment.allows(contract):
            raise OutsideCompartmentError(contract)
        return StoredContract(contract, bundle, careplan_id)

    async def _from_page(self, page: ReadBundle, contract_id: str) -> Contract:
        """The contract from a page of a search; `StoredContractUnreadableError` if it does not
        read as one even alone."""
        try:
            return page.contract(contract_id)
        except UnreadableContractError:
            # The page hit HAPI's cap on included resources (see MAX_SEARCH_COUNT).
            return await self.read(contract_id)


def version_of(contract: Contract) -> int:
    """The version ``contract`` was read at; a contract read from the store always has one."""
    if contract.version is None:
        raise ValueError(f"contract {contract.id!r} was read without a version")
    return contract.version
