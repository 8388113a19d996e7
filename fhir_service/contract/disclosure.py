"""What of a contract a reader is shown: everything for its own care unit, less for others.

The unit responsible for a contract sees all of it. Everyone else (the patient in their own
view, "Journalen på nätet", and other care units reading the coherent plan) sees only agreed
content: a draft is withheld whole, and so is content labelled restricted or very restricted,
whether the whole contract or one activity, goal or agreed time. A reader is told *that*
something was withheld, never what.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_service.contract.model import Contract, Identifier
from fhir_service.contract.vocabulary import Confidentiality, ContractStatus

__all__ = ["WITHHELD", "Disclosed", "disclose"]

WITHHELD = "withheld from this reader: a draft, or labelled restricted"
"""Why a reader was answered as if something did not exist, for the audit trail; never shown."""


@dataclass(frozen=True, slots=True)
class Disclosed:
    """What a reader may see of one contract (None: nothing), and whether anything was held."""

    contract: Contract | None
    withheld: bool


def disclose(contract: Contract, unit: Identifier | None) -> Disclosed:
    """What of ``contract`` a reader acting for care unit ``unit`` may see.

    ``unit`` is None for a reader acting for no unit: the patient, or a relative.
    """
    if unit is not None and unit == contract.responsible_unit.identifier:
        return Disclosed(contract, withheld=False)
    # A draft is the care unit's until it puts it to the patient for their agreement.
    unproposed = contract.status is ContractStatus.DRAFT and contract.patient_review is None
    if unproposed or _restricted(contract.confidentiality):
        return Disclosed(None, withheld=True)
    shown = {
        "activities": tuple(a for a in contract.activities if not _restricted(a.confidentiality)),
        "goals": tuple(g for g in contract.goals if not _restricted(g.confidentiality)),
        "agreed_times": tuple(
            t for t in contract.agreed_times if not _restricted(t.confidentiality)
        ),
    }
    if all(len(parts) == len(getattr(contract, name)) for name, parts in shown.items()):
        return Disclosed(contract, withheld=False)
    return Disclosed(contract.model_copy(update=shown), True)


def _restricted(confidentiality: Confidentiality) -> bool:
    return confidentiality is not Confidentiality.NORMAL
