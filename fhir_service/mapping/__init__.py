"""Contract <-> FHIR R4 resources and transaction Bundles: pure functions."""

from fhir_service.mapping import urls
from fhir_service.mapping.codes import unknown_codes
from fhir_service.mapping.from_fhir import UnreadableContractError
from fhir_service.mapping.identifier_systems import kind_for, system_for, system_of
from fhir_service.mapping.provenance import Author
from fhir_service.mapping.tables import (
    MAPPINGS_DIR,
    CodeTable,
    Language,
    code_table,
    code_table_names,
    language_of,
    relationships,
    schedule_units,
)
from fhir_service.mapping.time_types import (
    DefinedTimeType,
    named_time_types,
    unknown_time_types,
)

__all__ = [
    "MAPPINGS_DIR",
    "Author",
    "CodeTable",
    "DefinedTimeType",
    "Language",
    "UnreadableContractError",
    "code_table",
    "code_table_names",
    "kind_for",
    "language_of",
    "named_time_types",
    "relationships",
    "schedule_units",
    "system_for",
    "system_of",
    "unknown_codes",
    "unknown_time_types",
    "urls",
]
