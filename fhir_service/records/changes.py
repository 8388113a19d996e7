"""What every FHIR write shares: validation against our profiles, and the step from the stored
contract to the wanted one.

A write arrives as FHIR records, is read as the contract they make, and is stored as the JSON
facade stores it. The contract moves one way per write: its contents change while it is a draft
or under revision, or its status moves by one lifecycle step, never both at once.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_service.contract import Contract, ContractStatus
from fhir_service.contract.lifecycle import IllegalTransitionError
from fhir_service.errors import (
    PreconditionFailedError,
    RecordConflictError,
    VersionRequiredError,
    issue,
)
from fhir_service.fhir import HapiClient
from fhir_service.store import STEPS, Change, ContractStore, StoredContract

__all__ = [
    "MixedChangeError",
    "etag_version",
    "profile_errors",
    "profile_issues",
    "required_version",
    "step_to",
]

Resource = dict[str, Any]

_UNKNOWN_PROFILE = "has not been checked because it could not be found"
_HAPI_COMMENT = re.compile(r"/\*.*?\*/")


class MixedChangeError(RecordConflictError):
    """Contents and status changed at once."""

    code = "business-rule"


async def step_to(
    store: ContractStore, stored: StoredContract, wanted: Contract, expected: int, change: Change
) -> Contract:
    """Store ``wanted`` in place of the contract as ``stored`` (read with ``change``, expected
    at version ``expected``): new contents, or the lifecycle step from its status to
    ``wanted``'s."""
    current = stored.contract
    if wanted.status is current.status:
        return await store.update(wanted, expected, change, read=stored)
    if _contents(wanted) != _contents(current):
        raise MixedChangeError(
            f"the contract goes from {current.status} to {wanted.status} and its contents change"
            " too: send the contents first, then the status"
        )
    contract_id = current.id
    if wanted.status is ContractStatus.AGREED:
        return await store.agree(contract_id, expected, wanted.agreements, change, read=stored)
    if wanted.status not in STEPS:
        raise IllegalTransitionError(current.status, wanted.status)
    return await store.step(contract_id, wanted.status, expected, change, read=stored)


def _contents(contract: Contract) -> Contract:
    neutral = {"status": ContractStatus.DRAFT, "agreements": (), "version": None}
    return contract.model_copy(update=neutral)


async def profile_issues(hapi: HapiClient, resource: Resource) -> list[Resource]:
    """The error issues of HAPI's ``$validate`` of ``resource``, each with its ``expression``
    (HAPI's own, else its ``location``): the places base R4 and our profiles find wrong."""
    answer = await hapi.validate(resource)
    issues = []
    for found in answer.get("issue", []):
        if found.get("severity") not in ("error", "fatal"):
            continue
        if _UNKNOWN_PROFILE in str(found.get("diagnostics", "")):
            # A profile of the sender's we do not hold: its resources are checked against base
            # R4 and ours, not refused for naming it.
            continue
        where = found.get("expression") or found.get("location") or [resource["resourceType"]]
        # HAPI writes the type into its paths as a comment: entry[0].resource/*CarePlan/null*/.
        where = [_HAPI_COMMENT.sub("", str(w)) for w in where]
        issues.append(
            {
                "severity": "error",
                "code": found.get("code", "invalid"),
                "diagnostics": found.get("diagnostics", "does not conform to its profile"),
                "expression": where[:1],
            }
        )
    return issues


async def profile_errors(hapi: HapiClient, resource: Resource) -> list[str]:
    """`profile_issues` as ``expression: diagnostics`` lines; [] if all is well."""
    issues = await profile_issues(hapi, resource)
    return [f"{i['expression'][0]}: {i['diagnostics']}" for i in issues]


def required_version(if_match: str | None) -> int:
    """The version ``If-Match`` names: a change of a contract's state must name the version it
    was based on, as its ETag (``W/"3"``)."""
    if if_match is None:
        said = 'send If-Match with the version you read, e.g. W/"3"'
        raise VersionRequiredError(said, [issue(said, "required", "If-Match")])
    version = etag_version(if_match)
    if version is None:
        said = f"If-Match {if_match!r} is not a version"
        raise PreconditionFailedError(said, [issue(said, "invalid", "If-Match")])
    return version


def etag_version(etag: str) -> int | None:
    """The version an ETag or ``ifMatch`` names (``W/"3"`` is 3); None if it names none."""
    value = etag.strip().removeprefix("W/").strip('"')
    return int(value) if value.isdigit() else None
