"""The patient contract as a domain model: pure Python, knows nothing of FHIR or HTTP.

Import what you need from here: ``from fhir_service.contract import Contract, ContractStatus``.
"""

from fhir_service.contract.identifiers import IdentifierKind, InvalidIdentifierError
from fhir_service.contract.model import (
    Activity,
    AgreedTime,
    Agreement,
    CareContact,
    CareGuaranteeCase,
    Contact,
    Contract,
    Goal,
    GuaranteeVerdict,
    Identifier,
    Name,
    Organization,
    Patient,
    Period,
    Professional,
    Relative,
    Schedule,
)
from fhir_service.contract.vocabulary import (
    ActivityOwner,
    ActivityStatus,
    AgreedTimeStatus,
    AgreementParty,
    CareContactKind,
    Confidentiality,
    ContractStatus,
    GoalStatus,
    OrganizationKind,
)

__all__ = [
    "Activity",
    "ActivityOwner",
    "ActivityStatus",
    "AgreedTime",
    "AgreedTimeStatus",
    "Agreement",
    "AgreementParty",
    "CareContact",
    "CareContactKind",
    "CareGuaranteeCase",
    "Confidentiality",
    "Contact",
    "Contract",
    "ContractStatus",
    "Goal",
    "GoalStatus",
    "GuaranteeVerdict",
    "Identifier",
    "IdentifierKind",
    "InvalidIdentifierError",
    "Name",
    "Organization",
    "OrganizationKind",
    "Patient",
    "Period",
    "Professional",
    "Relative",
    "Schedule",
]
