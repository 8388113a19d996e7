"""The contract's lifecycle: which status may follow which, and what each step needs.

    draft ──agree──> agreed ──revise──> revised ──agree──> agreed
      │                │ │                 │
      └──revoke──┐     │ └──complete──> completed
                 v     v                   │
              revoked <┴──end──> ended <───┘ (end, revoke)

Agreeing needs both the patient's and the responsible clinician's agreement, each recorded with
when it was given. Leaving "agreed" (revising, completing, ending, revoking) starts a version whose
earlier agreements no longer hold: they stay in the version history, as Provenance in HAPI.
"""

from __future__ import annotations

from datetime import datetime

from fhir_service.contract.model import Agreement, Contract
from fhir_service.contract.vocabulary import AgreementParty, ContractStatus
from fhir_service.errors import RecordConflictError

__all__ = [
    "IllegalTransitionError",
    "agree",
    "agreed_at",
    "allowed_next",
    "complete",
    "end",
    "revise",
    "revoke",
]

_NEXT: dict[ContractStatus, frozenset[ContractStatus]] = {
    ContractStatus.DRAFT: frozenset({ContractStatus.AGREED, ContractStatus.REVOKED}),
    ContractStatus.AGREED: frozenset(
        {
            ContractStatus.REVISED,
            ContractStatus.COMPLETED,
            ContractStatus.ENDED,
            ContractStatus.REVOKED,
        }
    ),
    ContractStatus.REVISED: frozenset(
        {ContractStatus.AGREED, ContractStatus.ENDED, ContractStatus.REVOKED}
    ),
    ContractStatus.COMPLETED: frozenset(),
    ContractStatus.ENDED: frozenset(),
    ContractStatus.REVOKED: frozenset(),
}

_REQUIRED_PARTIES = frozenset({AgreementParty.PATIENT, AgreementParty.RESPONSIBLE_CLINICIAN})


class IllegalTransitionError(RecordConflictError, ValueError):
    """A contract was asked to move to a status its current one does not lead to."""

    code = "business-rule"

    def __init__(self, current: ContractStatus, wanted: ContractStatus, why: str = "") -> None:
        allowed = ", ".join(sorted(_NEXT[current])) or "nothing: it is final"
        article = "an" if current[:1] in "aeiou" else "a"
        message = f"{article} {current} contract cannot become {wanted} (it can become: {allowed})"
        super().__init__(f"{message}; {why}" if why else message)
        self.current = current
        self.wanted = wanted


def allowed_next(status: ContractStatus) -> frozenset[ContractStatus]:
    """The statuses a contract in ``status`` may move to."""
    return _NEXT[status]


def _move(contract: Contract, wanted: ContractStatus, **changes: object) -> Contract:
    if wanted not in _NEXT[contract.status]:
        raise IllegalTransitionError(contract.status, wanted)
    # Leaving "agreed" moves the agreements into history: they held for the version now closed.
    update = {"status": wanted, "agreements": (), **changes}
    moved = Contract.model_validate(contract.model_dump() | update)
    # What the sender wrote beyond the contract's fields stays with it (it is no JSON field).
    return moved.model_copy(update={"sent": contract.sent})


def agree(contract: Contract, agreements: tuple[Agreement, ...]) -> Contract:
    """The patient and the responsible clinician agree: draft or revised becomes agreed."""
    parties = {a.party for a in agreements}
    missing = _REQUIRED_PARTIES - parties
    if missing:
        raise IllegalTransitionError(
            contract.status,
            ContractStatus.AGREED,
            f"missing the agreement of: {', '.join(sorted(missing))}",
        )
    if len(parties) != len(agreements):
        raise ValueError("each party agrees once")
    return _move(contract, ContractStatus.AGREED, agreements=agreements)


def revise(contract: Contract) -> Contract:
    """Open an agreed contract for revision; its agreements no longer hold for the new version."""
    return _move(contract, ContractStatus.REVISED)


def complete(contract: Contract) -> Contract:
    """The contract has done its job."""
    return _move(contract, ContractStatus.COMPLETED)


def end(contract: Contract) -> Contract:
    """The contract stops before it is done (the patient moved, the need is gone)."""
    return _move(contract, ContractStatus.ENDED)


def revoke(contract: Contract) -> Contract:
    """The contract is withdrawn: it should not have been in force."""
    return _move(contract, ContractStatus.REVOKED)


def agreed_at(contract: Contract, party: AgreementParty) -> datetime | None:
    """When ``party`` agreed to this version, if it has."""
    return next((a.agreed_at for a in contract.agreements if a.party is party), None)
