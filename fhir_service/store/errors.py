"""Why the contract store refuses: its kinds of `fhir_service.errors`.

Each says what the caller needs to act on it: the contract's id, the version it is at, the
times a change would move. `OutsideCompartmentError` and `ContractNotFoundError` are one answer
to the caller (not found); the audit record is told which.
"""

from __future__ import annotations

from fhir_service.contract import Contract, ContractStatus
from fhir_service.errors import (
    BrokenRecordError,
    RecordConflictError,
    RecordNotFoundError,
    StaleRecordError,
    UnprocessableError,
)
from fhir_service.mapping.from_fhir import UnreadableContractError
from fhir_service.security.access import Denial

__all__ = [
    "BookedTimeChangedError",
    "ContractExistsError",
    "ContractNotEditableError",
    "ContractNotFoundError",
    "OutsideCompartmentError",
    "StaleVersionError",
    "StoredContractUnreadableError",
    "TooManyContractsError",
]


class ContractNotFoundError(RecordNotFoundError, LookupError):
    """No contract has that id."""

    def __init__(self, contract_id: str) -> None:
        super().__init__(f"no contract {contract_id!r}")
        self.contract_id = contract_id


class OutsideCompartmentError(ContractNotFoundError):
    """The contract exists, but not for this caller: it is answered as not found.

    ``contract`` is kept for the audit trail, which records whose contract was asked for.
    """

    refusal = Denial.OUTSIDE_COMPARTMENT.value

    def __init__(self, contract: Contract) -> None:
        super().__init__(contract.id)
        self.contract = contract


class ContractExistsError(RecordConflictError):
    """A contract with that id exists already; ``version`` is its current version."""

    code = "duplicate"
    title = "Contract exists"

    def __init__(self, contract_id: str, version: int) -> None:
        super().__init__(f"contract {contract_id!r} exists already (version {version})")
        self.contract_id = contract_id
        self.version = self.current_version = version


class StaleVersionError(StaleRecordError):
    """The write was based on ``expected``, but the contract is at ``current`` now."""

    def __init__(self, contract_id: str, expected: int | None, current: int) -> None:
        super().__init__(
            f"contract {contract_id!r} is at version {current}, not {expected}: read it again"
        )
        self.contract_id = contract_id
        self.expected = expected
        self.current = self.current_version = current


class ContractNotEditableError(RecordConflictError):
    """Only drafts and contracts under revision change their contents."""

    code = "business-rule"

    def __init__(self, contract_id: str, status: ContractStatus) -> None:
        super().__init__(
            f"contract {contract_id!r} is {status}: revise it before changing its contents"
            if status is ContractStatus.AGREED
            else f"contract {contract_id!r} is {status}: its contents no longer change"
        )
        self.contract_id = contract_id
        self.status = status


class BookedTimeChangedError(RecordConflictError):
    """An edit would drop, move, unbook or release times booked or held in published slots,
    or hold one itself."""

    code = "business-rule"

    def __init__(self, contract_id: str, keys: list[str]) -> None:
        super().__init__(
            f"contract {contract_id!r}: agreed times {', '.join(keys)} are booked or held in "
            "published slots, which only the booking routes and Appointment/$book, $hold and "
            "$release change"
        )
        self.contract_id = contract_id
        self.keys = keys


class StoredContractUnreadableError(BrokenRecordError):
    """The contract's records, as stored, no longer read as a contract: another system changed
    them so that the mapping cannot read them. The caller cannot mend it; an operator can."""

    title = "Stored contract unreadable"

    def __init__(self, contract_id: str, cause: UnreadableContractError) -> None:
        super().__init__(f"contract {contract_id!r} as stored cannot be read: {cause}")
        self.contract_id = contract_id


class TooManyContractsError(UnprocessableError):
    """A patient has more contracts than any plan should hold."""

    code = "too-costly"
    title = "Too many contracts"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the patient has more than {limit} contracts in these statuses; search them "
            "a page at a time instead"
        )
        self.limit = limit
