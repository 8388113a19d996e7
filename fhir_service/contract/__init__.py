"""The patient contract as a domain model: pure Python, knows nothing of FHIR or HTTP.

Import what you need from here: ``from fhir_service.contract import Contract, ContractStatus``.
"""

from fhir_service.contract.disclosure import disclose
from fhir_service.contract.identifiers import IdentifierKind, InvalidIdentifierError
from fhir_service.contract.lifecycle import IllegalTransitionError
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
    PatientReview,
    Period,
    Professional,
    Relative,
    Schedule,
    Signature,
    Text,
)
from fhir_service.contract.plan import CoherentPlan, PlannedTime, coherent_plan
from fhir_service.contract.problems import described, json_path
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
    "CoherentPlan",
    "Confidentiality",
    "Contact",
    "Contract",
    "ContractStatus",
    "Goal",
    "GoalStatus",
    "GuaranteeVerdict",
    "Identifier",
    "IdentifierKind",
    "IllegalTransitionError",
    "InvalidIdentifierError",
    "Name",
    "Organization",
    "OrganizationKind",
    "Patient",
    "PatientReview",
    "Period",
    "PlannedTime",
    "Professional",
    "Relative",
    "Schedule",
    "Signature",
    "Text",
    "coherent_plan",
    "described",
    "disclose",
    "json_path",
]
