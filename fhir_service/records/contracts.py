"""The contracts as one request's caller may see and change them: the JSON facade's one way in.

A `CallerContracts` is bound once per request (`fhir_service.api.deps.ContractsDep`) to its
caller's `Access`, the audit record (as a `Witness`) and the contract store. It applies the
caller's walls to every read, search and write, names every contract it touched in the audit
record, and refuses in the terms of `fhir_service.errors`; the web layer only says it in HTTP.
A change names the version it was based on (``If-Match``); a write under an Idempotency-Key
(claimed through its `Replays`) that runs into what an earlier try with the key wrote gives
back what that try made.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from fhir_service.audit.witness import Witness
from fhir_service.booking.catalogue import TimeTypeCatalogue
from fhir_service.contract import (
    Agreement,
    CoherentPlan,
    Contract,
    ContractStatus,
    Identifier,
    IdentifierKind,
    InvalidIdentifierError,
    ProposalStatus,
    TimeTypes,
    coherent_plan,
    disclose,
)
from fhir_service.errors import (
    RecordConflictError,
    UnprocessableError,
    issue,
)
from fhir_service.mapping import named_time_types, unknown_codes, unknown_time_types
from fhir_service.records.changes import required_version
from fhir_service.records.plan_access import readable_plan
from fhir_service.records.progress import ProgressAsked, report
from fhir_service.records.proposals import ProposalAsked, add, answer
from fhir_service.records.replays import Replays
from fhir_service.records.signing import WITHHELD, Decision
from fhir_service.records.signing import answer as answer_version
from fhir_service.security.access import Access, AccessDeniedError, Denial, identifier_named
from fhir_service.store import (
    Change,
    ContractNotFoundError,
    ContractStore,
    OutsideCompartmentError,
)

__all__ = [
    "CallerContracts",
    "ContractCriteria",
    "ContractWritten",
    "Found",
    "Shown",
]


@dataclass(frozen=True, slots=True)
class ContractWritten:
    """A contract as a write left it; ``replayed`` when an earlier try with the request's
    Idempotency-Key had made the write."""

    contract: Contract
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Shown:
    """A contract as the caller may see it; ``withheld`` when part of it is not shown."""

    contract: Contract
    withheld: bool


@dataclass(frozen=True, slots=True)
class ContractCriteria:
    """A contract search: identifiers as ``(kind, value)``, every criterion optional."""

    patient: tuple[str, str] | None = None
    status: Sequence[str] | None = None
    care_unit: tuple[str, str] | None = None
    care_contact: tuple[str, str] | None = None
    period_from: date | None = None
    period_to: date | None = None
    count: int = 20
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """One page of a search as the caller may see it."""

    contracts: tuple[Contract, ...]
    next_cursor: str | None
    withheld: bool
    unreadable: tuple[str, ...] = field(default=())
    """Matched, but no longer read as a contract; named only to callers acting for a unit."""


class CallerContracts:
    """One request's caller's contracts."""

    def __init__(
        self,
        access: Access,
        witness: Witness,
        change: Callable[[], Change],
        store: ContractStore,
        replays: Replays,
        time_types: TimeTypeCatalogue,
    ) -> None:
        self.access = access
        self.witness = witness
        # Asked at each write, not bound: the Idempotency-Key's tag is known only once claimed.
        self._change = change
        self.store = store
        self.time_types = time_types
        self.replays = replays
        """The caller's Idempotency-Keys, which the writes take."""

    # Reads -------------------------------------------------------------------------------

    async def read(self, contract_id: str) -> Shown:
        """The contract as stored and as the caller may see it; answered as absent when it is
        outside their walls or wholly withheld from them, and the refusal recorded."""
        contract = await self.store.read(contract_id)
        self.witness.saw_contract(contract)
        walls = self.access.compartment
        if not walls.allows(contract):
            # Whether another patient's contract exists is not the caller's business.
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise ContractNotFoundError(contract_id)
        disclosed = disclose(contract, walls.organization)
        if disclosed.contract is None:
            self.witness.refused(WITHHELD)
            raise ContractNotFoundError(contract_id)
        return Shown(disclosed.contract, disclosed.withheld)

    async def search(self, asked: ContractCriteria) -> Found:
        """A page of the contracts matching ``asked`` within the caller's walls: a patient's
        own, a unit's own; asking for another patient or unit is refused."""
        walls = self.access.compartment
        try:
            patient = _within(asked.patient, walls.patient)
            unit = _within(asked.care_unit, walls.organization)
        except AccessDeniedError as exc:
            self.witness.refused(exc.denial.value)
            raise
        page = await self.store.search(
            patient=patient,
            status=asked.status,
            care_unit=unit,
            care_contact=asked.care_contact,
            period_from=asked.period_from,
            period_to=asked.period_to,
            count=asked.count,
            cursor=asked.cursor,
        )
        disclosed = [disclose(c, walls.organization) for c in page.contracts]
        shown = tuple(d.contract for d in disclosed if d.contract is not None)
        for contract in shown:
            self.witness.saw_contract(contract)
        # Whose an unreadable contract is cannot be checked against what a patient may see (it
        # may be a draft): a patient hears only that something was withheld.
        named = page.unreadable if walls.patient is None else ()
        withheld = any(d.withheld for d in disclosed) or len(named) < len(page.unreadable)
        return Found(shown, page.next_cursor, withheld, named)

    async def coherent_plan(self, patient: str) -> CoherentPlan:
        """The coherent plan of the patient ``patient`` names (kind|value), as the caller may
        read it (`fhir_service.records.plan_access`)."""
        identifier = identifier_named(patient, patient=True)
        if identifier is None:
            raise UnprocessableError(
                "expected a patient's identifier as kind|value", title="Invalid patient"
            )
        readable = await readable_plan(
            self.store, identifier, self.access.compartment, self.witness
        )
        return coherent_plan(
            identifier,
            readable.contracts,
            now=datetime.now(UTC),
            withheld=readable.withheld,
            types=await self.time_types.current(),
        )

    # Writes ------------------------------------------------------------------------------

    async def create(self, contract: Contract) -> ContractWritten:
        """Store a new contract, the caller's own, with codes our tables know."""
        self.witness.saw_contract(contract)
        if not self.access.compartment.allows(contract):
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise AccessDeniedError(Denial.OUTSIDE_COMPARTMENT)
        _known_codes(contract, await self.time_types.current(knowing=named_time_types(contract)))
        return await self._made(
            contract.id, lambda: self.store.create(contract, author=self._change().author)
        )

    async def update(
        self, contract_id: str, contract: Contract, if_match: str | None
    ) -> ContractWritten:
        """Replace the contents of a draft or of a contract under revision."""
        if contract.id != contract_id:
            raise UnprocessableError(
                "the body's id differs from the one in the URL",
                [issue("the body's id differs from the one in the URL", "invalid", "$.id")],
                title="Invalid contract",
            )
        _known_codes(contract, await self.time_types.current(knowing=named_time_types(contract)))
        version = required_version(if_match)
        return await self._changed(
            contract_id, lambda: self.store.update(contract, version, self._change())
        )

    async def step(
        self, contract_id: str, to: ContractStatus, if_match: str | None
    ) -> ContractWritten:
        """Move the contract to ``to`` in its life: revised, completed, ended, revoked."""
        version = required_version(if_match)
        return await self._changed(
            contract_id, lambda: self.store.step(contract_id, to, version, self._change())
        )

    async def agree(
        self, contract_id: str, agreements: tuple[Agreement, ...], if_match: str | None
    ) -> ContractWritten:
        """Record the agreements that make this version agreed, given elsewhere (on paper, in
        the EHR): recorded by the caller, attested as such, never as the parties' own
        signatures, which they give themselves (`sign`)."""
        version = required_version(if_match)
        recorded = tuple(a.model_copy(update={"attested": True}) for a in agreements)
        return await self._changed(
            contract_id,
            lambda: self.store.agree(contract_id, version, recorded, self._change()),
        )

    async def propose(self, contract_id: str, if_match: str | None) -> ContractWritten:
        """Put this version to the patient for their agreement."""
        version = required_version(if_match)
        return await self._changed(
            contract_id, lambda: self.store.propose(contract_id, version, self._change())
        )

    async def sign(
        self, contract_id: str, decision: Decision, comment: str | None, if_match: str | None
    ) -> ContractWritten:
        """The caller answers the version in their own name (`fhir_service.records.signing`):
        the patient with their own token, the clinician with theirs."""
        version = required_version(if_match)
        asked = (contract_id, version, decision, comment)
        return await self._changed(
            contract_id,
            lambda: answer_version(
                self.store, self.access, self.witness, self._change(), asked, _json_path
            ),
        )

    async def report_progress(self, asked: ProgressAsked, if_match: str | None) -> ContractWritten:
        """Report how an activity goes (`fhir_service.records.progress`); ``If-Match``, when
        sent, names the version the report was based on."""
        version = None if if_match is None else required_version(if_match)
        asked = replace(asked, version=version)
        return await self._changed(
            asked.contract_id,
            lambda: report(
                self.store, self.access, self.witness, self._change(), asked, _json_path
            ),
        )

    async def add_proposal(self, asked: ProposalAsked, if_match: str | None) -> ContractWritten:
        """The patient proposes a change in their own words (`fhir_service.records.proposals`);
        ``If-Match``, when sent, names the version it was based on."""
        version = None if if_match is None else required_version(if_match)
        asked = replace(asked, version=version)
        return await self._changed(
            asked.contract_id,
            lambda: add(self.store, self.access, self.witness, self._change(), asked, _json_path),
        )

    async def answer_proposal(
        self,
        asked: tuple[str, str, ProposalStatus, str | None],
        if_match: str | None,
    ) -> ContractWritten:
        """The care unit takes a proposal into the contract or declines it, saying why
        (``asked``: the contract, the proposal, taken or declined, the reason)."""
        version = None if if_match is None else required_version(if_match)
        return await self._changed(
            asked[0], lambda: answer(self.store, self._change(), asked, version, _json_path)
        )

    async def _changed(
        self, contract_id: str, write: Callable[[], Awaitable[Contract]]
    ) -> ContractWritten:
        try:
            return await self._made(contract_id, write)
        except OutsideCompartmentError as exc:
            self.witness.saw_contract(exc.contract)
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise
        except AccessDeniedError as exc:
            self.witness.refused(exc.denial.value)
            raise

    async def _made(
        self, contract_id: str, write: Callable[[], Awaitable[Contract]]
    ) -> ContractWritten:
        try:
            written = ContractWritten(await write())
        except RecordConflictError:
            key = self.witness.write_key
            if key is None or not await self.store.wrote(key):
                raise
            # An earlier try with this Idempotency-Key made the write; this one ran into it.
            written = ContractWritten(await self.store.read(contract_id), replayed=True)
        self.witness.saw_contract(written.contract)
        # A party who is not the unit (the patient signing, reporting) is answered with what
        # they may see of it, as a read would answer them.
        shown = disclose(written.contract, self.access.compartment.organization).contract
        if shown is None:
            self.witness.refused(WITHHELD)
            raise ContractNotFoundError(contract_id)
        return ContractWritten(shown, written.replayed)


def _json_path(name: str) -> str:
    return f"$.{name}"


def _known_codes(contract: Contract, types: TimeTypes) -> None:
    """Refuses ``contract`` naming each code our tables (or its units' time types) do not
    hold."""
    unknown = unknown_codes(contract) + unknown_time_types(contract, types)
    if unknown:
        raise UnprocessableError(
            "the contract uses codes we do not know",
            [issue(message, "code-invalid", path) for path, message in unknown],
            title="Unknown codes",
        )


def _within(asked: tuple[str, str] | None, wall: Identifier | None) -> tuple[str, str] | None:
    """A search criterion inside the compartment: the wall itself, or what was asked if equal."""
    if wall is None:
        return asked
    if asked is not None and _identifier(asked) not in (None, wall):
        raise AccessDeniedError(Denial.OUTSIDE_COMPARTMENT)
    if asked is not None and _identifier(asked) is None:
        # Not an identifier at all: the store refuses it before HAPI is asked.
        return asked
    return wall.kind.value, wall.value


def _identifier(pair: tuple[str, str]) -> Identifier | None:
    # Compared as identifiers, so that 19121212-1212 and 191212121212 are one patient.
    try:
        return Identifier(kind=IdentifierKind(pair[0]), value=pair[1])
    except (ValueError, InvalidIdentifierError):
        return None
