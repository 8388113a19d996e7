"""The contract lifecycle: every (status, operation) pair either moves or is refused by name.

The table of allowed moves is written out here again, apart from the code's, so that a change to
either shows up. Agreeing needs both parties and records when each agreed; leaving "agreed" drops
the agreements; the final statuses lead nowhere; nothing else about the contract changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from fhir_service.contract import (
    ActivityOwner,
    ActivityStatus,
    Agreement,
    AgreementParty,
    Contract,
    ContractStatus,
    ProgressReport,
    Proposal,
    ProposalKind,
    ProposalStatus,
    Reporter,
    Signature,
)
from fhir_service.contract.lifecycle import (
    IllegalTransitionError,
    NotInForceError,
    NotPutToPatientError,
    NotTheirsError,
    ProposalClosedError,
    TooManyOpenError,
    add_proposal,
    agree,
    agreed_at,
    allowed_next,
    answer_proposal,
    complete,
    decline,
    end,
    propose,
    report_progress,
    revise,
    revoke,
    sign,
)
from fhir_service.contract.model import MAX_NOTES

EXAMPLE = Path(__file__).parents[3] / "profiles/examples/contracts/knee-replacement.json"

S = ContractStatus
P = AgreementParty
CET = timezone(timedelta(hours=1))
PATIENT_AT = datetime(2027, 1, 10, 9, 30, tzinfo=CET)
CLINICIAN_AT = datetime(2027, 1, 10, 9, 42, tzinfo=CET)
BOTH = (
    Agreement(party=P.PATIENT, agreed_at=PATIENT_AT),
    Agreement(party=P.RESPONSIBLE_CLINICIAN, agreed_at=CLINICIAN_AT),
)

OPERATIONS: dict[str, tuple[Callable[[Contract], Contract], ContractStatus]] = {
    "agree": (lambda contract: agree(contract, BOTH), S.AGREED),
    "revise": (revise, S.REVISED),
    "complete": (complete, S.COMPLETED),
    "end": (end, S.ENDED),
    "revoke": (revoke, S.REVOKED),
}

ALLOWED: frozenset[tuple[ContractStatus, ContractStatus]] = frozenset(
    {
        (S.DRAFT, S.AGREED),
        (S.DRAFT, S.REVOKED),
        (S.AGREED, S.REVISED),
        (S.AGREED, S.COMPLETED),
        (S.AGREED, S.ENDED),
        (S.AGREED, S.REVOKED),
        (S.REVISED, S.AGREED),
        (S.REVISED, S.ENDED),
        (S.REVISED, S.REVOKED),
    }
)
FINAL = [S.COMPLETED, S.ENDED, S.REVOKED]
LEAVING_AGREED = ["revise", "complete", "end", "revoke"]
PAIRS = list(product(ContractStatus, OPERATIONS))


def example_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return data


def contract_in(status: ContractStatus, version: int | None = 3) -> Contract:
    """The example in ``status``: with both agreements when agreed, with none otherwise."""
    data = example_data()
    data["status"] = status
    data["version"] = version
    if status is not S.AGREED:
        data["agreements"] = []
    return Contract.model_validate(data)


def _unchanged_parts(contract: Contract) -> dict[str, Any]:
    return contract.model_dump(exclude={"status", "agreements"})


@pytest.mark.parametrize(
    ("current", "operation"), PAIRS, ids=[f"{status}-{name}" for status, name in PAIRS]
)
def test_every_status_and_operation(current: ContractStatus, operation: str) -> None:
    contract = contract_in(current)
    move, wanted = OPERATIONS[operation]

    if (current, wanted) in ALLOWED:
        moved = move(contract)

        assert moved.status is wanted
        assert moved.agreements == (BOTH if wanted is S.AGREED else ())
        assert _unchanged_parts(moved) == _unchanged_parts(contract)
        assert contract.status is current  # the input is left as it was
    else:
        with pytest.raises(IllegalTransitionError) as caught:
            move(contract)

        assert (caught.value.current, caught.value.wanted) == (current, wanted)
        assert re.search(rf"\b{current}\b contract cannot become {wanted}\b", str(caught.value))
        assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("status", list(ContractStatus))
def test_allowed_next_matches_the_table(status: ContractStatus) -> None:
    expected = {wanted for current, wanted in ALLOWED if current is status}

    assert allowed_next(status) == expected


@pytest.mark.parametrize("status", FINAL)
def test_final_statuses_allow_nothing(status: ContractStatus) -> None:
    contract = contract_in(status)

    assert allowed_next(status) == frozenset()
    for name, (move, _) in OPERATIONS.items():
        with pytest.raises(IllegalTransitionError, match="it is final"):
            move(contract)
        assert contract.status is status, name


def test_a_refusal_lists_where_the_contract_can_go() -> None:
    with pytest.raises(IllegalTransitionError) as caught:
        complete(contract_in(S.DRAFT))

    assert "(it can become: agreed, revoked)" in str(caught.value)


@pytest.mark.parametrize("current", [S.DRAFT, S.REVISED])
@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ((BOTH[1],), "patient"),
        ((BOTH[0],), "responsible-clinician"),
        ((), "patient, responsible-clinician"),
    ],
    ids=["without-patient", "without-clinician", "without-both"],
)
def test_agreeing_needs_both_parties(
    current: ContractStatus, given: tuple[Agreement, ...], missing: str
) -> None:
    with pytest.raises(IllegalTransitionError) as caught:
        agree(contract_in(current), given)

    assert (caught.value.current, caught.value.wanted) == (current, S.AGREED)
    assert str(caught.value).endswith(f"; missing the agreement of: {missing}")


def test_each_party_agrees_once() -> None:
    twice = (*BOTH, Agreement(party=P.PATIENT, agreed_at=CLINICIAN_AT))

    with pytest.raises(ValueError, match="each party agrees once"):
        agree(contract_in(S.DRAFT), twice)


@pytest.mark.parametrize("current", [S.DRAFT, S.REVISED])
def test_agreeing_records_who_agreed_and_when(current: ContractStatus) -> None:
    agreed = agree(contract_in(current), BOTH)

    assert agreed.status is S.AGREED
    assert agreed.agreements == BOTH
    assert agreed_at(agreed, P.PATIENT) == PATIENT_AT
    assert agreed_at(agreed, P.RESPONSIBLE_CLINICIAN) == CLINICIAN_AT


def test_the_order_of_the_agreements_does_not_matter() -> None:
    agreed = agree(contract_in(S.DRAFT), (BOTH[1], BOTH[0]))

    assert agreed.status is S.AGREED
    assert agreed_at(agreed, P.PATIENT) == PATIENT_AT
    assert agreed_at(agreed, P.RESPONSIBLE_CLINICIAN) == CLINICIAN_AT


@pytest.mark.parametrize("operation", LEAVING_AGREED)
def test_leaving_agreed_drops_the_agreements(operation: str) -> None:
    contract = contract_in(S.AGREED)
    assert agreed_at(contract, P.PATIENT) is not None
    move, wanted = OPERATIONS[operation]

    moved = move(contract)

    assert moved.status is wanted
    assert moved.agreements == ()
    assert agreed_at(moved, P.PATIENT) is None
    assert agreed_at(moved, P.RESPONSIBLE_CLINICIAN) is None
    assert len(contract.agreements) == 2  # the agreed version keeps them


def test_a_revised_contract_is_agreed_anew() -> None:
    later = tuple(
        Agreement(party=a.party, agreed_at=a.agreed_at + timedelta(days=30)) for a in BOTH
    )

    agreed = agree(contract_in(S.DRAFT), BOTH)
    revised = revise(agreed)
    again = agree(revised, later)
    done = complete(again)

    assert [c.status for c in (agreed, revised, again, done)] == [
        S.AGREED,
        S.REVISED,
        S.AGREED,
        S.COMPLETED,
    ]
    assert agreed_at(again, P.PATIENT) == PATIENT_AT + timedelta(days=30)
    assert done.agreements == ()
    assert allowed_next(done.status) == frozenset()


def test_the_store_version_is_kept() -> None:
    assert revoke(contract_in(S.DRAFT, version=7)).version == 7
    assert revise(contract_in(S.AGREED, version=None)).version is None


# The parties' own acts ---------------------------------------------------------------------

NOW = datetime(2027, 1, 12, 14, 0, tzinfo=CET)


def _signed(party: AgreementParty, at: datetime = NOW) -> Signature:
    return Signature(party=party, signed_at=at, version=3)


def test_either_party_may_sign_first_and_the_second_signature_agrees() -> None:
    proposed = propose(contract_in(S.DRAFT), NOW)

    for first, second in (
        (P.PATIENT, P.RESPONSIBLE_CLINICIAN),
        (P.RESPONSIBLE_CLINICIAN, P.PATIENT),
    ):
        half = sign(proposed, _signed(first))
        agreed = sign(half, _signed(second, NOW + timedelta(minutes=5)))

        assert half.status is S.DRAFT
        assert [s.party for s in half.signatures] == [first]
        assert agreed.status is S.AGREED
        assert {(a.party, a.attested) for a in agreed.agreements} == {(p, False) for p in P}
        assert agreed.signatures == ()
        assert agreed.patient_review is None


def test_the_patient_signs_only_what_is_put_to_them_and_a_decline_voids_their_signature() -> None:
    draft = contract_in(S.DRAFT)
    with pytest.raises(NotPutToPatientError):
        sign(draft, _signed(P.PATIENT))

    signed = sign(sign(propose(draft, NOW), _signed(P.PATIENT)), _signed(P.RESPONSIBLE_CLINICIAN))
    assert signed.status is S.AGREED
    half = sign(propose(draft, NOW), _signed(P.PATIENT))
    declined = decline(half, NOW, "Inte så här.")

    assert declined.signatures == ()
    assert declined.patient_review is not None
    assert declined.patient_review.comment == "Inte så här."
    with pytest.raises(NotPutToPatientError):
        sign(declined, _signed(P.PATIENT))
    with pytest.raises(IllegalTransitionError):
        propose(contract_in(S.AGREED), NOW)


def test_progress_changes_only_the_reporters_own_activity_and_only_in_force() -> None:
    agreed = contract_in(S.AGREED)
    own = next(a for a in agreed.activities if a.owner is ActivityOwner.PATIENT)
    cares = next(a for a in agreed.activities if a.owner is ActivityOwner.CARE_UNIT)
    report = ProgressReport(reported_at=NOW, by=Reporter.PATIENT, note="Bra.")

    reported = report_progress(agreed, own.key, ActivityStatus.COMPLETED, report)

    changed = [a for a in reported.activities if a not in agreed.activities]
    assert [(a.key, a.status, a.progress) for a in changed] == [
        (own.key, ActivityStatus.COMPLETED, report)
    ]
    assert reported.status is S.AGREED
    with pytest.raises(NotTheirsError):
        report_progress(agreed, cares.key, ActivityStatus.COMPLETED, report)
    with pytest.raises(KeyError):
        report_progress(agreed, "no-such", ActivityStatus.COMPLETED, report)
    with pytest.raises(ValueError, match="progress is one of"):
        report_progress(agreed, own.key, ActivityStatus.CANCELLED, report)
    with pytest.raises(NotInForceError):
        report_progress(contract_in(S.DRAFT), own.key, ActivityStatus.COMPLETED, report)


def _proposal(key: str, at: datetime, status: ProposalStatus = ProposalStatus.OPEN) -> Proposal:
    reason = "Nej." if status is ProposalStatus.DECLINED else None
    return Proposal(
        key=key,
        kind=ProposalKind.WISH,
        text="Mer tid.",
        proposed_at=at,
        status=status,
        reason=reason,
    )


def test_a_proposal_is_answered_once_and_a_full_list_makes_room_from_the_answered() -> None:
    agreed = contract_in(S.AGREED)
    asked = add_proposal(agreed, _proposal("p1", NOW))
    taken = answer_proposal(asked, "p1", ProposalStatus.TAKEN, None)

    assert asked.status is S.AGREED
    assert taken.proposals[0].status is ProposalStatus.TAKEN
    with pytest.raises(ProposalClosedError):
        answer_proposal(taken, "p1", ProposalStatus.DECLINED, "Nej.")
    with pytest.raises(NotPutToPatientError):
        add_proposal(contract_in(S.DRAFT), _proposal("p2", NOW))

    full = agreed.model_copy(
        update={
            "proposals": tuple(
                _proposal(
                    f"p{i}",
                    NOW + timedelta(minutes=i),
                    ProposalStatus.TAKEN if i < 2 else ProposalStatus.OPEN,
                )
                for i in range(MAX_NOTES)
            )
        }
    )
    made_room = add_proposal(full, _proposal("new", NOW + timedelta(days=1)))
    assert len(made_room.proposals) == MAX_NOTES
    assert "p0" not in {p.key for p in made_room.proposals}
    all_open = full.model_copy(
        update={"proposals": tuple(_proposal(f"p{i}", NOW) for i in range(MAX_NOTES))}
    )
    with pytest.raises(TooManyOpenError):
        add_proposal(all_open, _proposal("new", NOW))
