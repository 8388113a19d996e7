"""Bulk import and export of contracts as NDJSON, one contract per line."""

from fhir_service.sync.bulk.exporter import (
    ExportReport,
    Unreadable,
    contract_line,
    export_contracts,
)
from fhir_service.sync.bulk.importer import BulkImporter, ImportReport, merge_transactions
from fhir_service.sync.bulk.lines import read_line
from fhir_service.sync.bulk.state import Rejection

__all__ = [
    "BulkImporter",
    "ExportReport",
    "ImportReport",
    "Rejection",
    "Unreadable",
    "contract_line",
    "export_contracts",
    "merge_transactions",
    "read_line",
]
