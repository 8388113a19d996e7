"""The contract store: patient contracts kept in HAPI as FHIR records, read, searched and changed
one whole contract at a time (`contracts`), and the search criteria it asks HAPI with
(`search`)."""

from fhir_service.store.contracts import (
    MAX_SEARCH_COUNT,
    STEPS,
    BookedTimeChangedError,
    Change,
    ContractExistsError,
    ContractNotEditableError,
    ContractNotFoundError,
    ContractPage,
    ContractStore,
    IdentifierQuery,
    InvalidSearchError,
    OutsideCompartmentError,
    StaleVersionError,
    StoredContract,
    TooManyContractsError,
)
from fhir_service.store.search import UNIT_OF_CONTRACT

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
    "TooManyContractsError",
]
