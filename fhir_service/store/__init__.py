"""The contract store: patient contracts kept in HAPI as FHIR records, read and searched
(`reads`) and changed one whole contract at a time (`contracts`), the search criteria it asks
HAPI with (`search`), and its refusals (`errors`)."""

from fhir_service.store.contracts import STEPS, ContractStore
from fhir_service.store.errors import (
    BookedTimeChangedError,
    ContractExistsError,
    ContractNotEditableError,
    ContractNotFoundError,
    OutsideCompartmentError,
    StaleVersionError,
    StoredContractUnreadableError,
    TooManyContractsError,
)
from fhir_service.store.reads import MAX_SEARCH_COUNT, Change, ContractPage, StoredContract
from fhir_service.store.search import UNIT_OF_CONTRACT, IdentifierQuery, InvalidSearchError

__all__ = [
    "MAX_SEARCH_COUNT",
    "STEPS",
    "UNIT_OF_CONTRACT",
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
    "StoredContractUnreadableError",
    "TooManyContractsError",
]
