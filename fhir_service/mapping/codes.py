"""Codes a contract uses that our code tables do not hold, each with its JSON path."""

from __future__ import annotations

from fhir_service.contract import Contract, Professional
from fhir_service.mapping.tables import care_guarantee_steps, code_table, relationships

__all__ = ["unknown_codes"]


def unknown_codes(contract: Contract) -> list[tuple[str, str]]:
    """``(json path, message)`` for every code of ``contract`` missing from its table.

    An empty list means the contract maps to FHIR without an unknown code.
    """
    roles = code_table("care-team-role").names
    categories = code_table("activity-category").names
    relationship_codes = relationships().names
    problems: list[tuple[str, str]] = []

    def role(path: str, professional: Professional) -> None:
        if professional.role not in roles:
            problems.append((f"{path}.role", f"unknown care-team-role code {professional.role!r}"))

    if contract.responsible_clinician is not None:
        role("$.responsible_clinician", contract.responsible_clinician)
    for i, professional in enumerate(contract.professionals):
        role(f"$.professionals[{i}]", professional)
    for i, contact in enumerate(contract.care_contacts):
        role(f"$.care_contacts[{i}].professional", contact.professional)
    for i, time in enumerate(contract.agreed_times):
        if time.professional is not None:
            role(f"$.agreed_times[{i}].professional", time.professional)
    for i, activity in enumerate(contract.activities):
        if activity.category not in categories:
            problems.append(
                (
                    f"$.activities[{i}].category",
                    f"unknown activity-category code {activity.category!r}",
                )
            )
    for i, relative in enumerate(contract.relatives):
        if relative.relationship not in relationship_codes:
            problems.append(
                (
                    f"$.relatives[{i}].relationship",
                    f"unknown relationship code {relative.relationship!r}",
                )
            )
    case = contract.care_guarantee
    if case is not None:
        per_case = care_guarantee_steps().get(case.jurisdiction, {}).get(case.step)
        if per_case is None:
            problems.append(
                (
                    "$.care_guarantee.step",
                    f"unknown care-guarantee step {case.step!r} in {case.jurisdiction}",
                )
            )
        elif per_case != (case.deadline is not None):
            needed = (
                "is set per case: give it" if per_case else "follows from the rules: leave it out"
            )
            problems.append(
                ("$.care_guarantee.deadline", f"the deadline of {case.step!r} {needed}")
            )
    return problems
