"""Who may read a patient's coherent plan, and what of it: one rule for the JSON plan, the
patient's page and the FHIR operation.

A patient reads their own plan. A care unit reads the plan of a patient it has a contract with,
or takes part in one of (through activities, agreed times or care contacts): the coherent plan
is for everyone who contributes to it. What each reader is shown follows
`fhir_service.contract.disclosure`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_service.audit.witness import Witness
from fhir_service.contract import Contract, ContractStatus, Identifier
from fhir_service.contract.disclosure import disclose
from fhir_service.contract.plan import PLAN_STATUSES
from fhir_service.errors import ForbiddenError, RecordNotFoundError
from fhir_service.security.access import Compartment, Denial
from fhir_service.store import ContractStore

__all__ = ["ReadablePlan", "readable_plan"]

# A unit's care relationship shows in a draft too, though the plan shows only contracts in force.
_READ_STATUSES = (ContractStatus.DRAFT, *PLAN_STATUSES)


@dataclass(frozen=True)
class ReadablePlan:
    """The contracts of the plan as the caller may see them, and whether anything was held."""

    contracts: tuple[Contract, ...]
    withheld: bool


async def readable_plan(
    store: ContractStore, patient: Identifier, walls: Compartment, trail: Witness
) -> ReadablePlan:
    """What of ``patient``'s plan a caller within ``walls`` may read; one HAPI request per 50
    contracts. Raises `ForbiddenError` for another patient's plan, `RecordNotFoundError` when
    the caller's unit takes part in none of it, or the store's ``TooManyContractsError``.
    """
    if walls.patient is not None and walls.patient != patient:
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        raise ForbiddenError(Denial.OUTSIDE_COMPARTMENT.value)
    stored = await store.all_of(patient, _READ_STATUSES)
    contracts = stored.contracts
    unit = walls.organization
    if unit is not None and not any(_takes_part(unit, c) for c in contracts):
        trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
        raise RecordNotFoundError("your care unit takes part in no contract of this patient's")
    disclosed = [disclose(c, unit) for c in contracts]
    shown = tuple(d.contract for d in disclosed if d.contract is not None)
    for contract in shown:
        trail.saw_contract(contract)
    # A contract that no longer reads is left out like a withheld one, and said to be.
    withheld = any(d.withheld for d in disclosed) or bool(stored.unreadable)
    return ReadablePlan(shown, withheld=withheld)


def _takes_part(unit: Identifier, contract: Contract) -> bool:
    return any(o.identifier == unit for o in contract.organizations())
