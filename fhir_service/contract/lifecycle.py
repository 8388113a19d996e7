"""The contract's lifecycle: which status may follow which, and what each step needs.

    draft ──agree──> agreed ──revise──> revised ──agree──> agreed
      │                │ │                 │
      └──revoke──┐     │ └──complete──> completed
                 v     v                   │
              revoked <┴──end──> ended <───┘ (end, revoke)

Agreeing needs both the patient's and the responsible clinician's agreement, each recorded with
when it was given: either both given elsewhere and recorded in one step (`agree`), or each
party's own signature of the same contents (`sign`), in either order; the second makes the
contract agreed. The care unit puts a version to the patient first (`propose`), and the patient
may decline it with a comment (`decline`). These steps keep the status: the contract stays a
draft or a revision until both have signed. Leaving "agreed" (revising, completing, ending,
revoking) starts a version whose earlier agreements no longer hold: they stay in the version
history, as Provenance in HAPI.
"""

from __future__ import annotations

from datetime import datetime

from fhir_service.contract.model import (
    MAX_NOTES,
    Agreement,
    Contract,
    PatientReview,
    ProgressReport,
    Proposal,
    Signature,
)
from fhir_service.contract.vocabulary import (
    ActivityOwner,
    ActivityStatus,
    AgreementParty,
    ContractStatus,
    ProposalStatus,
    Reporter,
)
from fhir_service.errors import RecordConflictError

__all__ = [
    "REPORTED",
    "IllegalTransitionError",
    "NotInForceError",
    "NotPutToPatientError",
    "NotTheirsError",
    "ProposalClosedError",
    "TooManyOpenError",
    "add_proposal",
    "agree",
    "agreed_at",
    "allowed_next",
    "answer_proposal",
    "complete",
    "decline",
    "end",
    "propose",
    "report_progress",
    "revise",
    "revoke",
    "sign",
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
_BEING_AGREED = frozenset({ContractStatus.DRAFT, ContractStatus.REVISED})


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
    # Leaving "agreed" moves the agreements into history: they held for the version now closed;
    # reaching it ends the signing, whose signatures the agreements now are.
    update: dict[str, object] = {
        "status": wanted,
        "agreements": (),
        "patient_review": None,
        "signatures": (),
        **changes,
    }
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


class NotPutToPatientError(RecordConflictError):
    """The patient was asked to sign or decline a version the care unit has not put to them."""

    code = "business-rule"

    def __init__(self) -> None:
        super().__init__(
            "this version is not awaiting the patient: the care unit proposes it to them first"
        )


def propose(contract: Contract, at: datetime) -> Contract:
    """The care unit puts this version to the patient: it awaits the patient's agreement.

    Proposing again after a decline asks again; signatures given so far hold.
    """
    _being_agreed(contract)
    review = PatientReview(proposed_at=at)
    return contract.model_copy(update={"patient_review": review})


def decline(contract: Contract, at: datetime, comment: str | None) -> Contract:
    """The patient declines the version put to them, saying why; the unit sees it."""
    _being_agreed(contract)
    review = contract.patient_review
    if review is None or review.declined_at is not None:
        raise NotPutToPatientError
    answer = PatientReview(proposed_at=review.proposed_at, declined_at=at, comment=comment)
    # The patient's own earlier signature of these contents no longer says what they think.
    kept = tuple(s for s in contract.signatures if s.party is not AgreementParty.PATIENT)
    return contract.model_copy(update={"patient_review": answer, "signatures": kept})


def sign(contract: Contract, signature: Signature) -> Contract:
    """One party signs this version's contents in their own name; once both have, the contract
    is agreed, each signature its signer's agreement. A party signing again is signed once."""
    _being_agreed(contract)
    review = contract.patient_review
    put_to_patient = review is not None and review.declined_at is None
    if signature.party is AgreementParty.PATIENT and not put_to_patient:
        raise NotPutToPatientError
    earlier = next((s for s in contract.signatures if s.party is signature.party), None)
    signatures = contract.signatures if earlier is not None else (*contract.signatures, signature)
    if {s.party for s in signatures} != _REQUIRED_PARTIES:
        return contract.model_copy(update={"signatures": signatures})
    agreements = tuple(
        Agreement(party=s.party, agreed_at=s.signed_at)
        for s in sorted(signatures, key=lambda s: s.party)
    )
    return _move(contract, ContractStatus.AGREED, agreements=agreements)


def _being_agreed(contract: Contract) -> None:
    if contract.status not in _BEING_AGREED:
        raise IllegalTransitionError(
            contract.status,
            ContractStatus.AGREED,
            "only a draft or a revision is put to the parties' agreement",
        )


REPORTED = frozenset(
    {
        ActivityStatus.NOT_STARTED,
        ActivityStatus.IN_PROGRESS,
        ActivityStatus.COMPLETED,
        ActivityStatus.ON_HOLD,
    }
)
"""The statuses a progress report sets; the others (scheduled, cancelled, stopped) are the
care unit's to decide, in a change of the contract."""
_IN_FORCE = frozenset({ContractStatus.AGREED, ContractStatus.REVISED})
_OWN: dict[Reporter, frozenset[ActivityOwner]] = {
    Reporter.PATIENT: frozenset({ActivityOwner.PATIENT}),
    Reporter.RELATIVE: frozenset({ActivityOwner.RELATIVE}),
    Reporter.CARE_UNIT: frozenset(ActivityOwner),
}


class NotInForceError(RecordConflictError):
    """Progress was reported on a contract that is not being carried out."""

    code = "business-rule"

    def __init__(self, status: ContractStatus) -> None:
        article = "an" if status[:1] in "aeiou" else "a"
        super().__init__(
            f"{article} {status} contract is not being carried out: progress and proposals are "
            "for an agreed contract, or one under revision"
        )


class NotTheirsError(ValueError):
    """An activity's progress was reported by someone it does not belong to."""


def report_progress(
    contract: Contract, key: str, status: ActivityStatus, report: ProgressReport
) -> Contract:
    """Set how activity ``key`` goes: its status, and who said so, when, with their note.

    Needs no new agreement: the status of an activity is no term of it. The patient reports on
    their own activities, a relative on theirs (``KeyError`` for no such activity,
    `NotTheirsError` for another's), the care unit on any.
    """
    if contract.status not in _IN_FORCE:
        raise NotInForceError(contract.status)
    if status not in REPORTED:
        raise ValueError(f"progress is one of {', '.join(sorted(REPORTED))}, not {status}")
    activity = next((a for a in contract.activities if a.key == key), None)
    if activity is None:
        raise KeyError(key)
    if activity.owner not in _OWN[report.by]:
        raise NotTheirsError(f"activity {key} is the {activity.owner}'s, not the {report.by}'s")
    reported = activity.model_copy(update={"status": status, "progress": report})
    activities = tuple(reported if a.key == key else a for a in contract.activities)
    return contract.model_copy(update={"activities": activities})


class ProposalClosedError(RecordConflictError):
    """A proposal the care unit has answered already was answered again."""

    code = "business-rule"


class TooManyOpenError(RecordConflictError):
    """The patient proposed more while as many proposals as a contract holds are open."""

    code = "business-rule"


def add_proposal(contract: Contract, proposal: Proposal) -> Contract:
    """The patient asks for a change in their own words: on a contract in force or under
    revision, or a draft put to them. A proposal is no term of the contract: it needs no new
    agreement, and stays with the contract until the unit answers it."""
    if contract.status is ContractStatus.DRAFT and contract.patient_review is None:
        raise NotPutToPatientError
    if contract.status not in _IN_FORCE and contract.status is not ContractStatus.DRAFT:
        raise NotInForceError(contract.status)
    kept = contract.proposals
    if len(kept) >= MAX_NOTES:
        # Answered ones make room, oldest first; open ones wait for the unit's answer.
        answered = [p for p in kept if p.status is not ProposalStatus.OPEN]
        if not answered:
            raise TooManyOpenError(f"{MAX_NOTES} proposals are open: the care unit answers first")
        oldest = min(answered, key=lambda p: p.proposed_at)
        kept = tuple(p for p in kept if p is not oldest)
    return contract.model_copy(update={"proposals": (*kept, proposal)})


def answer_proposal(
    contract: Contract, key: str, status: ProposalStatus, reason: str | None
) -> Contract:
    """The care unit takes proposal ``key`` into the contract (``taken``) or declines it with a
    ``reason`` the patient sees. ``KeyError`` for no such proposal."""
    proposal = next((p for p in contract.proposals if p.key == key), None)
    if proposal is None:
        raise KeyError(key)
    if proposal.status is not ProposalStatus.OPEN:
        raise ProposalClosedError(f"proposal {key} is {proposal.status} already")
    answered = Proposal.model_validate(proposal.model_dump() | {"status": status, "reason": reason})
    proposals = tuple(answered if p.key == key else p for p in contract.proposals)
    return contract.model_copy(update={"proposals": proposals})


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
