"""The FHIR records as one request's caller may see and change them (`CallerRecords`), the
guard every resource given back passes, and the refusals they answer with."""

from fhir_service.records import errors
from fhir_service.records.errors import InvalidRequestError, issue
from fhir_service.records.plan_access import PlanRefusedError, readable_plan
from fhir_service.records.repository import CallerRecords, Find

__all__ = [
    "CallerRecords",
    "Find",
    "InvalidRequestError",
    "PlanRefusedError",
    "errors",
    "issue",
    "readable_plan",
]
