"""The contract store: contracts kept in HAPI, written whole, never over a newer version.

Every write is one transaction Bundle. Creating writes the contract's records as conditional
creates, so two creators of one contract end with one CarePlan (HAPI refuses the loser with 409
or finds the winner's records; either way the loser learns the contract exists). Every later write
names the version it was based on; a stale one fails whole with :class:`StaleVersionError`.
Contents change only while a contract is a draft or under revision; status changes go through the
lifecycle: `ContractStore.agree` with the agreements, `ContractStore.step` for the other steps.

Reading one contract is one search (with includes), plus one per further page for very large ones.
Searching is one request per page of whole contracts (see :meth:`ContractStore.search`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from fhir_service.contract import (
    Agreement,
    Contract,
    ContractStatus,
    Identifier,
    Organization,
    OrganizationKind,
    lifecycle,
)
from fhir_service.contract.bookings import changed_bookings
from fhir_service.fhir import ConflictError, HapiClient, InvalidRequestError, NotFoundError
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import (
    READ_PARAMS,
    UnreadableContractError,
    contract_from_bundle,
)
from fhir_service.mapping.identifier_systems import system_of
from fhir_service.mapping.provenance import Author, change_entry
from fhir_service.mapping.sent import carried_over, is_record
from fhir_service.mapping.tables import Language, code_table
from fhir_service.mapping.to_fhir import contract_to_bundle
from fhir_service.security.access import AccessDeniedError, Compartment, Denial
from fhir_service.store import search as search_criteria
from fhir_service.store.search import IdentifierQuery, InvalidSearchError

__all__ = [
    "MAX_SEARCH_COUNT",
    "STEPS",
    "BookedTimeChangedError",
    "Change",
    "ContractExistsError",
    "ContractNotEditableError",
    "ContractNotFoundError",
    "ContractPage",
    "ContractStore",
    "IdentifierQuery",
    "InvalidSearchError",
    "OutsideCompartmentError",
    "StaleVersionError",
    "StoredContract",
    "TooManyContractsError",
]


@dataclass(frozen=True, slots=True)
class Change:
    """Who changes a contract, and the compartment their grant reaches.

    A change to a contract outside ``compartment`` fails as if the contract were not there
    (:class:`OutsideCompartmentError`); one that would move it out fails with
    ``AccessDeniedError``. ``author`` is named in the change's Provenance.
    """

    author: Author
    compartment: Compartment


_log = logging.getLogger(__name__)

# A transaction that lost a race over a shared record is sent again this often, at most.
_CONFLICT_ATTEMPTS = 3
_IDS_AT_ONCE = 50
"""How many ids one ``_id`` search asks HAPI about."""

_EDITABLE = frozenset({ContractStatus.DRAFT, ContractStatus.REVISED})
_STEPS: dict[ContractStatus, Callable[[Contract], Contract]] = {
    ContractStatus.REVISED: lifecycle.revise,
    ContractStatus.COMPLETED: lifecycle.complete,
    ContractStatus.ENDED: lifecycle.end,
    ContractStatus.REVOKED: lifecycle.revoke,
}
STEPS = frozenset(_STEPS)
"""The statuses :meth:`ContractStore.step` moves a contract to."""
_ACTIVITIES = {
    ContractStatus.REVISED: "revise",
    ContractStatus.COMPLETED: "complete",
    ContractStatus.ENDED: "end",
    ContractStatus.REVOKED: "revoke",
}
"""The Provenance activity of each step."""

MAX_SEARCH_COUNT = 50
"""The most contracts on one page of a search.

HAPI 8.8 stops loading included resources once a page has about 1000 of them, and says nothing
(hapi/README.md). A contract brings some 10 to 25, so 50 contracts usually fit; a contract that
lost records to the cap is read alone.
"""


class ContractNotFoundError(LookupError):
    """No contract has that id."""

    def __init__(self, contract_id: str) -> None:
        super().__init__(f"no contract {contract_id!r}")
        self.contract_id = contract_id


class OutsideCompartmentError(ContractNotFoundError):
    """The contract exists, but not for this caller: it is answered as not found.

    ``contract`` is kept for the audit trail, which records whose contract was asked for.
    """

    def __init__(self, contract: Contract) -> None:
        super().__init__(contract.id)
        self.contract = contract


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


class BookedTimeChangedError(Exception):
    """An edit would drop, move or unbook times booked in published slots."""

    def __init__(self, contract_id: str, keys: list[str]) -> None:
        super().__init__(
            f"contract {contract_id!r}: agreed times {', '.join(keys)} are booked in published "
            "slots; cancel or rebook them through /booking"
        )
        self.contract_id = contract_id
        self.keys = keys


class TooManyContractsError(Exception):
    """A patient has more contracts than any plan should hold."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the patient has more than {limit} contracts in these statuses")
        self.limit = limit


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


class ContractStore:
    """Create, read, search, change and move contracts through their lifecycle, in HAPI."""

    def __init__(self, hapi: HapiClient, language: Language = "sv") -> None:
        self.hapi = hapi
        self.language = language

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
        bundle = result.as_bundle()
        contracts: list[Contract] = []
        unreadable: list[str] = []
        for careplan in result.matches():
            contract_id = search_criteria.contract_id_of(careplan)
            try:
                contracts.append(await self._from_page(bundle, contract_id))
            except UnreadableContractError as exc:
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

    async def create(self, contract: Contract, *, author: Author | None = None) -> Contract:
        """Store a new contract; :class:`ContractExistsError` if its id is taken.

        With an ``author``, the transaction also writes the change's Provenance.
        """
        bundle = contract_to_bundle(contract, self.language, new=True)
        if author is not None:
            bundle["entry"].append(_change(bundle, contract, author, "create", created=True))
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            try:
                response = await self.hapi.transaction(bundle, idempotent=True)
                break
            except ConflictError as conflict:
                # Lost a race on HAPI's unique match URL: to a creator of this contract, whose
                # contract is there now, or of another sharing a new record (a professional, a
                # unit) with it, and then the transaction, now matching that record, is tried
                # again: nothing of the lost one was written.
                try:
                    current = await self.read(contract.id)
                except ContractNotFoundError:
                    if attempt == _CONFLICT_ATTEMPTS:
                        raise conflict from None
                    continue
                raise ContractExistsError(contract.id, _version(current)) from None
        status, version = _careplan_outcome(response)
        if not status.startswith("201"):
            raise ContractExistsError(contract.id, version)
        return _written(contract, version)

    async def update(
        self,
        contract: Contract,
        expected_version: int,
        by: Change | None = None,
        *,
        read: StoredContract | None = None,
    ) -> Contract:
        """Replace the contents of a draft or a contract under revision.

        ``read``: the contract as the caller has just read it with :meth:`records` and the same
        ``by``, so it is not read again; a change since then still fails the write whole
        (:class:`StaleVersionError`), since the CarePlan is written at the version read.
        """
        stored = read or await self._search_one(contract.id, by)
        current, careplan_id = stored.contract, stored.careplan_id
        self._check(current, expected_version)
        if by is not None and not by.compartment.allows(contract):
            raise AccessDeniedError(Denial.OUTSIDE_COMPARTMENT)
        if current.status not in _EDITABLE:
            raise ContractNotEditableError(contract.id, current.status)
        if contract.status is not current.status:
            raise ValueError(
                f"status changes go through the lifecycle, not an update to {contract.status}"
            )
        booked = changed_bookings(current, contract)
        if booked:
            raise BookedTimeChangedError(contract.id, booked)
        if contract.sent is None:
            # Changed through the JSON facade: what the sender wrote beyond it stays.
            contract = contract.model_copy(update={"sent": carried_over(current.sent or {})})
        return await self._write(contract, current, careplan_id, by, "update")

    async def step(
        self,
        contract_id: str,
        to: ContractStatus,
        expected_version: int,
        by: Change | None = None,
        *,
        read: StoredContract | None = None,
    ) -> Contract:
        """Move the contract one lifecycle step, to ``to``: revised (open an agreed contract for
        revision), completed (it has done its job), ended (it stops before it is done) or
        revoked (it is withdrawn). Agreeing takes the agreements: :meth:`agree`.

        ``read``, here and in :meth:`agree`: the contract as :meth:`records` has just given it
        with the same ``by``, so it is not read again (see :meth:`update`).
        """
        if to not in _STEPS:
            raise ValueError(f"{to} is no step of its own: agree with agree(), edit with update()")
        return await self._transition(
            contract_id, expected_version, _STEPS[to], by, _ACTIVITIES[to], read
        )

    async def agree(
        self,
        contract_id: str,
        expected_version: int,
        agreements: tuple[Agreement, ...],
        by: Change | None = None,
        *,
        read: StoredContract | None = None,
    ) -> Contract:
        """Record the patient's and the responsible clinician's agreement to this version."""
        return await self._transition(
            contract_id,
            expected_version,
            lambda c: lifecycle.agree(c, agreements),
            by,
            "agree",
            read,
        )

    async def _transition(
        self,
        contract_id: str,
        expected_version: int,
        step: Callable[[Contract], Contract],
        by: Change | None,
        activity: str,
        read: StoredContract | None,
    ) -> Contract:
        stored = read or await self._search_one(contract_id, by)
        current = stored.contract
        self._check(current, expected_version)
        return await self._write(step(current), current, stored.careplan_id, by, activity)

    def _check(self, current: Contract, expected_version: int) -> None:
        if current.version != expected_version:
            raise StaleVersionError(current.id, expected_version, _version(current))

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
        contract = contract_from_bundle(bundle, contract_id, sent=sent)
        if by is not None and not by.compartment.allows(contract):
            raise OutsideCompartmentError(contract)
        return StoredContract(contract, bundle, careplan_id)

    async def _from_page(self, bundle: dict[str, Any], contract_id: str) -> Contract:
        try:
            return contract_from_bundle(bundle, contract_id)
        except UnreadableContractError:
            # The page hit HAPI's cap on included resources (see MAX_SEARCH_COUNT).
            return await self.read(contract_id)

    async def _write(
        self,
        new: Contract,
        current: Contract,
        careplan_id: str,
        by: Change | None,
        activity: str,
    ) -> Contract:
        bundle = contract_to_bundle(new, self.language, if_version=(careplan_id, _version(current)))
        if by is not None:
            bundle["entry"].append(_change(bundle, new, by.author, activity, created=False))
        bundle["entry"] += _removals(current, new)
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            try:
                response = await self.hapi.transaction(bundle, idempotent=True)
                break
            except ConflictError:
                latest = await self.read(new.id)
                if latest.version != current.version or attempt == _CONFLICT_ATTEMPTS:
                    raise StaleVersionError(new.id, current.version, _version(latest)) from None
                # Still at the version read: the race was over a record shared with another
                # contract (see create); nothing was written, so the same write goes again.
        _, version = _careplan_outcome(response)
        return _written(new, version)


def _written(contract: Contract, version: int) -> Contract:
    # As a read gives it: what was kept of the sender's is in the records, read by writers.
    return contract.model_copy(update={"version": version, "sent": None})


def _change(
    bundle: dict[str, Any], contract: Contract, author: Author, activity: str, *, created: bool
) -> dict[str, Any]:
    return change_entry(
        bundle, contract, author, activity=activity, created=created, recorded=datetime.now(UTC)
    )


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
    # Records the sender's plan held beside the contract's parts, no longer sent.
    gone += [
        (elements["resourceType"], urls.ID_RECORD, elements["identifier"][0]["value"])
        for url, elements in (current.sent or {}).items()
        if is_record(elements) and url not in (new.sent or {})
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
