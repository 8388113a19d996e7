"""The contract store: contracts kept in HAPI, written whole, never over a newer version.

Every write is one transaction Bundle. Creating writes the contract's records as conditional
creates, so two creators of one contract end with one CarePlan (HAPI refuses the loser with 409
or finds the winner's records; either way the loser learns the contract exists). Every later write
names the version it was based on; a stale one fails whole with :class:`StaleVersionError`.
Contents change only while a contract is a draft or under revision; status changes go through the
lifecycle: `ContractStore.agree` with the agreements given elsewhere, `ContractStore.sign` with
each party's own signature, `ContractStore.step` for the other steps; `ContractStore.propose` and
`ContractStore.decline` put a version to the patient and record their no.
The reads the writes build on are `fhir_service.store.reads.ContractReads`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fhir_service.contract import (
    ActivityStatus,
    Agreement,
    AgreementParty,
    Contract,
    ContractStatus,
    ProgressReport,
    Proposal,
    ProposalStatus,
    Signature,
    lifecycle,
)
from fhir_service.contract.bookings import changed_bookings
from fhir_service.fhir import ConflictError, HapiClient
from fhir_service.mapping import urls
from fhir_service.mapping.provenance import Author, change_entry, signature_entry
from fhir_service.mapping.sent import carried_over, is_record
from fhir_service.mapping.stored import resolved
from fhir_service.mapping.tables import Language
from fhir_service.mapping.to_fhir import contract_to_bundle
from fhir_service.security.access import AccessDeniedError, Denial
from fhir_service.store.errors import (
    BookedTimeChangedError,
    ContractExistsError,
    ContractNotEditableError,
    ContractNotFoundError,
    StaleVersionError,
)
from fhir_service.store.own_writes import OwnWrites
from fhir_service.store.reads import Change, ContractReads, StoredContract, version_of

__all__ = ["STEPS", "ContractStore"]

# A transaction that lost a race over a shared record is sent again this often, at most.
_CONFLICT_ATTEMPTS = 3

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


class ContractStore(ContractReads):
    """Create, read, search, change and move contracts through their lifecycle, in HAPI."""

    def __init__(self, hapi: HapiClient, language: Language = "sv") -> None:
        super().__init__(hapi, language)
        self.own_writes = OwnWrites()
        """The record versions written through this store (and its bookings), with their
        contracts: the change feed routes those changes without reading the contract back."""

    async def create(self, contract: Contract, *, author: Author | None = None) -> Contract:
        """Store a new contract; :class:`ContractExistsError` if its id is taken.

        With an ``author``, the transaction also writes the change's Provenance.
        """
        held = changed_bookings(None, contract)
        if held:
            raise BookedTimeChangedError(contract.id, held)
        contract = contract.model_copy(
            update={"patient_review": None, "signatures": (), "proposals": ()}
        )
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
                        raise
                    continue
                raise ContractExistsError(contract.id, version_of(current)) from conflict
        status, version = _careplan_outcome(response)
        if not status.startswith("201"):
            raise ContractExistsError(contract.id, version)
        self.own_writes.wrote(contract, response)
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
        current = stored.contract
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
        # Put to the patient by the propose step only, signed by the sign step, proposed and
        # answered by theirs: never by what a writer's body says of them.
        contract = contract.model_copy(
            update={
                "patient_review": current.patient_review,
                "signatures": (),
                "proposals": current.proposals,
            }
        )
        if contract.sent is None:
            # Changed through the JSON facade: what the sender wrote beyond it stays.
            contract = contract.model_copy(update={"sent": carried_over(current.sent or {})})
        return await self._write(contract, stored, by, "update")

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

    async def propose(
        self,
        contract_id: str,
        expected_version: int,
        by: Change | None = None,
        *,
        read: StoredContract | None = None,
    ) -> Contract:
        """Put this version (a draft or a revision) to the patient for their agreement."""
        now = datetime.now(UTC)
        return await self._transition(
            contract_id, expected_version, lambda c: lifecycle.propose(c, now), by, "propose", read
        )

    async def decline(
        self,
        contract_id: str,
        expected_version: int,
        comment: str | None,
        by: Change | None = None,
        *,
        read: StoredContract | None = None,
    ) -> Contract:
        """The patient declines the version put to them; ``comment`` says why."""
        now = datetime.now(UTC)
        return await self._transition(
            contract_id,
            expected_version,
            lambda c: lifecycle.decline(c, now, comment),
            by,
            "decline",
            read,
        )

    async def sign(
        self,
        contract_id: str,
        expected_version: int,
        party: AgreementParty,
        by: Change,
        *,
        read: StoredContract | None = None,
    ) -> Contract:
        """``party`` signs this version's contents in their own name (``by`` is who signs).

        The signature is a Provenance of its own; the CarePlan is written only by the second
        party's signature, which makes the contract agreed in the same transaction. Two parties
        signing at once each store theirs without seeing the other's: each reads again after,
        and whoever then finds both agrees (the other's write of the same loses the race and
        finds it agreed).
        """
        stored = read or await self._search_one(contract_id, by)
        current = stored.contract
        self._check(current, expected_version)
        signature = Signature(party=party, signed_at=datetime.now(UTC), version=current.version)
        signed = lifecycle.sign(current, signature)
        entry = signature_entry(
            current,
            signature,
            careplan_id=stored.careplan_id,
            party_url=_party_url(stored, party),
            author=by.author,
        )
        if signed.status is ContractStatus.AGREED:
            return await self._write(signed, stored, by, "agree", [entry])
        await self.hapi.transaction(
            {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}, idempotent=True
        )
        again = await self._search_one(contract_id, by)
        both = {s.party for s in again.contract.signatures} == set(AgreementParty)
        if again.contract.version != current.version or not both:
            return again.contract.model_copy(update={"sent": None})
        try:
            return await self._write(lifecycle.sign(again.contract, signature), again, by, "agree")
        except StaleVersionError:
            return await self.read(contract_id)

    async def report_progress(
        self,
        contract_id: str,
        key: str,
        status: ActivityStatus,
        report: ProgressReport,
        by: Change,
        expected_version: int | None = None,
        *,
        check: Callable[[Contract], None] | None = None,
    ) -> Contract:
        """Set how activity ``key`` goes (`lifecycle.report_progress`), as `_amend` amends."""
        step = partial(lifecycle.report_progress, key=key, status=status, report=report)
        return await self._amend(contract_id, step, by, "progress", expected_version, check)

    async def add_proposal(
        self,
        contract_id: str,
        proposal: Proposal,
        by: Change,
        expected_version: int | None = None,
        *,
        check: Callable[[Contract], None] | None = None,
    ) -> Contract:
        """Add the patient's ``proposal`` (`lifecycle.add_proposal`), as `_amend` amends."""
        step = partial(lifecycle.add_proposal, proposal=proposal)
        return await self._amend(contract_id, step, by, "proposal", expected_version, check)

    async def answer_proposal(
        self,
        contract_id: str,
        key: str,
        status: ProposalStatus,
        reason: str | None,
        by: Change,
        expected_version: int | None = None,
    ) -> Contract:
        """The unit takes or declines proposal ``key`` (`lifecycle.answer_proposal`), as
        `_amend` amends."""
        step = partial(lifecycle.answer_proposal, key=key, status=status, reason=reason)
        return await self._amend(contract_id, step, by, "answer-proposal", expected_version)

    async def _amend(
        self,
        contract_id: str,
        step: Callable[[Contract], Contract],
        by: Change,
        activity: str,
        expected_version: int | None,
        check: Callable[[Contract], None] | None = None,
    ) -> Contract:
        """Write ``step`` of the contract: a change of no term of it (progress, a proposal),
        made on an agreed contract too. ``check`` refuses a caller the contract as read does not
        allow. Without ``expected_version`` it is of the contract as it now is: one that meets
        a concurrent change is made again on the new version, not refused as stale."""
        attempt = 1
        while True:
            stored = await self._search_one(contract_id, by)
            current = stored.contract
            if expected_version is not None:
                self._check(current, expected_version)
            if check is not None:
                check(current)
            try:
                return await self._write(step(current), stored, by, activity)
            except StaleVersionError:
                if expected_version is not None or attempt == _CONFLICT_ATTEMPTS:
                    raise
                attempt += 1

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
        return await self._write(step(current), stored, by, activity)

    def _check(self, current: Contract, expected_version: int) -> None:
        if current.version != expected_version:
            raise StaleVersionError(current.id, expected_version, version_of(current))

    async def _write(
        self,
        new: Contract,
        stored: StoredContract,
        by: Change | None,
        activity: str,
        also: list[dict[str, Any]] | None = None,
    ) -> Contract:
        current = stored.contract
        bundle = contract_to_bundle(
            new, self.language, if_version=(stored.careplan_id, version_of(current))
        )
        bundle["entry"] += also or []
        if by is not None:
            bundle["entry"].append(_change(bundle, new, by.author, activity, created=False))
        bundle["entry"] += _removals(current, new)
        # The records the read found are named by id: HAPI searches for none of them.
        bundle = resolved(bundle, (e["resource"] for e in stored.bundle.get("entry", [])))
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            try:
                response = await self.hapi.transaction(bundle, idempotent=True)
                break
            except ConflictError as conflict:
                latest = await self.read(new.id)
                if latest.version != current.version or attempt == _CONFLICT_ATTEMPTS:
                    stale = StaleVersionError(new.id, current.version, version_of(latest))
                    raise stale from conflict
                # Still at the version read: the race was over a record shared with another
                # contract (see create); nothing was written, so the same write goes again.
        _, version = _careplan_outcome(response)
        self.own_writes.wrote(new, response)
        return _written(new, version)


def _party_url(stored: StoredContract, party: AgreementParty) -> str:
    """The record a party signs for, as the stored CarePlan names it: its subject (the
    patient), its author (the responsible clinician's role) or, naming none, its unit."""
    careplan = next(
        e["resource"]
        for e in stored.bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == "CarePlan"
        and e["resource"].get("id") == stored.careplan_id
    )
    if party is AgreementParty.PATIENT:
        return str(careplan["subject"]["reference"])
    if "author" in careplan:
        return str(careplan["author"]["reference"])
    unit = next(e for e in careplan["extension"] if e.get("url") == urls.EXT_RESPONSIBLE_UNIT)
    return str(unit["valueReference"]["reference"])


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
