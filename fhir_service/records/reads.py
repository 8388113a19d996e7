"""What one request's caller may see of the FHIR records: `CallerReads`, the ground floor of
`fhir_service.records.repository.CallerRecords`.

It is bound once per request to its caller (their `Access`, the audit record as a `Witness`,
the `Change` their writes make) and to HAPI and the contract store. Every resource it gives back
has passed the caller's `FhirGuard` and is named in the audit record. The writes and operations
(`records.writes`, `records.transactions`, `records.plan`, `records.scheduling`) build on it.

What it gives back is in HAPI's addresses; the web layer says them in its own. Refusals are
`fhir_service.errors`; the store's and HAPI's own errors pass through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from fhir_service.audit.records import Touched
from fhir_service.audit.witness import Witness
from fhir_service.booking import BookingService
from fhir_service.contract import Contract
from fhir_service.errors import (
    ForbiddenError,
    InvalidRequestError,
    RecordNotFoundError,
    issue,
)
from fhir_service.fhir import GoneError, HapiClient, HapiRequestError, NotFoundError
from fhir_service.mapping import urls
from fhir_service.mapping.elements import CONFIDENTIALITY_SYSTEM
from fhir_service.mapping.identifier_systems import system_for, system_of
from fhir_service.mapping.ownership import contract_of
from fhir_service.records.guard import NOT_PATIENT_DATA, FhirGuard
from fhir_service.security.access import Access, Denial
from fhir_service.store import Change, ContractStore
from fhir_service.store.search import UNIT_OF_CONTRACT

__all__ = ["CallerReads"]

Resource = dict[str, Any]
Params = list[tuple[str, str]]

# Answers that would count what the caller may not see, or carry it inside another resource.
_COUNTING = {"_summary": {"count"}, "_total": None}
_CONTAINING = {"_contained": None, "_containedType": None}
_MOST_AUDITED = 50
_HAPI_CODE = re.compile(r"HAPI-[0-9]+: ")
# What a patient is not shown of their CarePlans: drafts the unit has not put to them, and
# contracts labelled restricted.
_SHOWN_TO_PATIENTS = [
    ("_tag:not", f"{urls.TAG_NOT_PROPOSED}|draft"),
    ("_security:not", f"{CONFIDENTIALITY_SYSTEM}|R"),
    ("_security:not", f"{CONFIDENTIALITY_SYSTEM}|V"),
]
# How a search of each other type names the patient whose records it finds (the directory and
# the bookable times name none, and are not narrowed).
_BY_PATIENT = {
    "CareTeam": "subject",
    "Goal": "subject",
    "Appointment": "patient",
    "RelatedPerson": "patient",
}
_NARROWED_BY_PATIENT = {"Patient", "CarePlan", *_BY_PATIENT}


class CallerReads:
    """One request's caller's view of the FHIR records."""

    def __init__(
        self,
        access: Access,
        witness: Witness,
        change: Change,
        booking: BookingService,
    ) -> None:
        self.access = access
        self.witness = witness
        self.change = change
        self.booking = booking
        self.hapi: HapiClient = booking.hapi
        self.store: ContractStore = booking.store
        self.guard = FhirGuard(access, self.hapi)

    @property
    def hapi_base(self) -> str:
        """HAPI's base URL, which every address in what this gives back starts with."""
        return self.hapi.base_url

    # Reads -------------------------------------------------------------------------------

    async def read(self, kind: str, rid: str) -> Resource:
        """``kind/rid`` as the caller may see it; `RecordNotFoundError` when they may not."""
        return await self.shown(await self.hapi.read(kind, rid))

    async def vread(self, kind: str, rid: str, version: str) -> Resource:
        """Version ``version`` of ``kind/rid``, as the caller may see it."""
        return await self.shown(await self.hapi.vread(kind, rid, version))

    async def shown(self, resource: Resource) -> Resource:
        """``resource`` as the caller may see it, named in the audit record; a record outside
        the caller's walls is answered as absent, and the refusal recorded."""
        found = (await self.guard.screened([resource]))[0]
        if found is None:
            # Whether another patient's record exists is not the caller's business.
            self.witness.refused(Denial.OUTSIDE_COMPARTMENT.value)
            raise RecordNotFoundError("no such resource")
        self._note([found])
        return found

    async def history(self, kind: str, rid: str, params: Params) -> Resource:
        """The versions of ``kind/rid``, if the caller may see it as it is now."""
        await self.read(kind, rid)
        bundle = await self._hapi_page(f"/{kind}/{rid}/_history", params)
        return await self._guarded(bundle)

    async def type_history(self, kind: str, params: Params) -> Resource:
        """The changes to every ``kind`` record, of those the caller may see; a deletion
        (which carries no record to judge) only to a caller without walls."""
        bundle = await self._hapi_page(f"/{kind}/_history", params)
        return await self._guarded(bundle)

    async def search(self, kind: str, params: Params, *, posted: bool = False) -> Resource:
        """A page of ``kind`` matching ``params``, less what the caller may not see.

        ``posted``: the parameters came in a form body; the audit record takes them down, as
        a search by GET has them in its URL.
        """
        counted = self._counted(kind)
        unguarded = {**_CONTAINING, **({} if counted else _COUNTING)}
        if not self.guard.unrestricted:
            for name, value in params:
                bare = name.split(":")[0]
                refused = unguarded.get(bare, set())
                if bare in unguarded and (refused is None or value in refused):
                    raise InvalidRequestError(
                        f"{name}={value} is not offered to this caller",
                        [
                            issue(
                                "would count or carry what this caller may not see",
                                "forbidden",
                                name,
                            )
                        ],
                    )
        for name, value in params:
            source = value.split(":")[0]
            revinclude = name.split(":")[0] == "_revinclude" and source != "*"
            if revinclude and not self.guard.may_read(source):
                # Said, not dropped: an answer silently missing what was asked misleads.
                raise ForbiddenError(
                    f"{name}={value}: this token may not read {source}",
                    [issue(f"this token may not read {source}", "forbidden", name)],
                )
        if posted:
            self.witness.query = urlencode(params)
        ids = await self.guard.patient_ids()
        walls = self.access.compartment
        if walls.patient is not None and not ids and kind in _NARROWED_BY_PATIENT:
            # No record of theirs is stored yet: nothing of the patient's to find.
            return {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
        bundle = await self._hapi_page(f"/{kind}", self._narrowed(kind, params, ids))
        return await self._guarded(bundle, walled_search=counted)

    async def page(self, query: Params) -> Resource:
        """The page a search's paging link names, less what the caller may not see."""
        return await self._guarded(await self._hapi_page("", query))

    # What the reads share ----------------------------------------------------------------

    def _counted(self, kind: str) -> bool:
        """Whether HAPI's search of ``kind``, narrowed to the caller, finds only what they may
        see, so that its count reveals nothing else: a unit's CarePlans (asked of HAPI by unit,
        and the unit sees all of its own), a patient's (asked without the drafts and restricted
        contracts withheld from them) and the records that are no patient's. Not the other
        records of a contract, whose drafts HAPI cannot tell."""
        if kind in NOT_PATIENT_DATA:
            return self.guard.may_read(kind)
        walls = self.access.compartment
        return kind == "CarePlan" and (walls.patient is not None or walls.organization is not None)

    async def _hapi_page(self, path: str, params: Params) -> Resource:
        try:
            return await self.hapi.page(path, params)
        except HapiRequestError as exc:
            if exc.status >= 500 or isinstance(exc, (NotFoundError, GoneError)):
                raise  # not the search's fault: an expired page is gone, HAPI failed
            # HAPI's own words on a bad search (an unknown parameter, a bad value); its address
            # is not in them.
            words = _HAPI_CODE.sub("", exc.diagnostics.replace(self.hapi.base_url, ""))
            raise InvalidRequestError(words) from exc

    def _narrowed(self, kind: str, params: Params, ids: frozenset[str]) -> Params:
        """The search's parameters plus the caller's walls, so that HAPI pages hold theirs."""
        walls = self.access.compartment
        if walls.patient is not None and kind == "Patient":
            return [*params, ("_id", ",".join(sorted(ids)))]
        if walls.patient is not None and kind == "CarePlan":
            # Not the drafts nor the restricted contracts the patient is not shown, so that
            # HAPI finds (and counts) exactly what they see.
            mine = ",".join(f"Patient/{i}" for i in sorted(ids))
            return [*params, ("subject", mine), *_SHOWN_TO_PATIENTS]
        if walls.patient is not None and kind in _BY_PATIENT:
            return [*params, (_BY_PATIENT[kind], ",".join(f"Patient/{i}" for i in sorted(ids)))]
        if walls.organization is not None and kind == "CarePlan":
            unit = f"{system_for(walls.organization.kind)}|{walls.organization.value}"
            return [*params, (UNIT_OF_CONTRACT, unit)]
        return params

    async def _guarded(self, bundle: Resource, *, walled_search: bool = False) -> Resource:
        """``bundle`` (a page from HAPI) less what the caller may not see, its entries named in
        the audit record. ``walled_search``: HAPI was asked for the caller's records only, so
        its ``total`` counts nothing hidden, as long as the walls left every match of the page.
        """
        entries = [e for e in bundle.get("entry", []) if isinstance(e, dict)]
        with_resource = [e for e in entries if isinstance(e.get("resource"), dict)]
        screened = await self.guard.screened(e["resource"] for e in with_resource)
        shown = {id(e): r for e, r in zip(with_resource, screened, strict=True) if r is not None}
        # Deletions in a history carry no resource; only an unrestricted reader sees them.
        kept = [
            {**e, "resource": shown[id(e)]} if id(e) in shown else e
            for e in entries
            if id(e) in shown or (self.guard.unrestricted and "resource" not in e)
        ]
        matches = [e for e in with_resource if e.get("search", {}).get("mode", "match") == "match"]
        whole_page = all(id(e) in shown for e in matches)
        if not self.guard.unrestricted and not (walled_search and whole_page):
            # A total would count what was left out.
            bundle.pop("total", None)
        self._note([e["resource"] for e in kept if "resource" in e])
        return {**bundle, "entry": kept}

    def _note(self, resources: Iterable[Resource]) -> None:
        """Name ``resources`` in the audit record, each by its contract too, so that "who read
        contract X" finds reads through FHIR as well as through the JSON facade."""
        for resource in list(resources)[:_MOST_AUDITED]:
            kind, rid = str(resource.get("resourceType")), resource.get("id")
            version = resource.get("meta", {}).get("versionId")
            reference = f"{kind}/{rid}" + (f"/_history/{version}" if version else "")
            patients = ((system_of(p), p.value) for p in self.guard.patients_of(resource))
            contract_id = contract_of(resource)
            contract = None if contract_id is None else (urls.ID_CONTRACT, contract_id)
            self.witness.saw(Touched(kind, identifier=contract, reference=reference), patients)

    def saw_contract(self, contract: Contract) -> None:
        """Name ``contract`` in the audit record."""
        self.witness.saw_contract(contract)
