"""The FHIR records as one request's caller may see and change them: the one way through the
FHIR endpoint.

A `CallerRecords` is bound once per request (`fhir_service.api.deps.RecordsDep`) to its caller
and to HAPI and the contract store. Every read, vread, search, include, paging link, history and
write of every type, and every operation, goes through it, so that every resource it gives back
has passed the caller's `FhirGuard` and is named in the audit record, and every write is a
change of a contract made through the store. Routes parse the request, call one method and turn
its answer into HTTP; they never call HAPI or the guard. The reads are `CallerReads`'s; the
writes and operations are the modules beside it, each working on the caller's reads.
"""

from __future__ import annotations

from typing import Any

from fhir_service.contract import Contract
from fhir_service.records.careplan_operations import (
    Said,
    progress_careplan,
    proposal_careplan,
    propose_careplan,
    sign_careplan,
)
from fhir_service.records.plan import coherent_plan
from fhir_service.records.reads import CallerReads
from fhir_service.records.scheduling import Find, book, find, hold, release
from fhir_service.records.time_types import create_time_type, update_time_type
from fhir_service.records.transactions import contract_in, stored_transaction
from fhir_service.records.writes import Written, create_record, update_record

__all__ = ["CallerRecords", "Find", "Written"]

Resource = dict[str, Any]
Params = list[tuple[str, str]]


class CallerRecords(CallerReads):
    """One request's caller's view of the FHIR records, and their way to change them."""

    async def coherent_plan(self, patient: str | None) -> Resource:
        """``CarePlan/$coherent-plan``: the plan of the patient ``patient`` names
        (``system|value``), as the caller may see it."""
        return await coherent_plan(self, patient)

    async def find(self, asked: Find) -> Resource:
        """``Appointment/$find``: free times, as proposed Appointments."""
        return await find(self, asked)

    # Writes ------------------------------------------------------------------------------

    async def create(self, kind: str, resource: Resource, condition: Params | None) -> Written:
        """Add ``resource`` to the contract it names; with a ``condition`` (``If-None-Exist``),
        the one record that matches it instead, if there is one. A HealthcareService is a
        care unit's time type."""
        if kind == "HealthcareService":
            return await create_time_type(self, resource, condition)
        return await create_record(self, kind, resource, condition)

    async def update(
        self, kind: str, rid: str, resource: Resource, if_match: str | None
    ) -> Written:
        """Put ``resource`` in place of ``kind/rid``, at the version ``if_match`` names."""
        if kind == "HealthcareService":
            return await update_time_type(self, rid, resource, if_match)
        return await update_record(self, kind, rid, resource, if_match)

    async def transaction(
        self, bundle: Resource, if_match: str | None, *, represented: bool = False
    ) -> Resource:
        """Create or change the contract a transaction Bundle holds; its transaction-response,
        with each record as stored when ``represented``."""
        return await stored_transaction(self, bundle, if_match, represented=represented)

    async def checked_transaction(self, bundle: Resource) -> Contract:
        """The contract a transaction Bundle holds, checked as :meth:`transaction` checks it,
        with nothing written."""
        return await contract_in(self, bundle)

    async def propose(self, careplan_id: str, if_match: str | None) -> Resource:
        """``CarePlan/{id}/$propose``: put this version to the patient for their agreement."""
        return await propose_careplan(self, careplan_id, if_match)

    async def sign(self, careplan_id: str, said: Said, if_match: str | None) -> Resource:
        """``CarePlan/{id}/$sign``: answer this version in one's own name (``decision``,
        ``comment``)."""
        return await sign_careplan(self, careplan_id, said, if_match)

    async def progress(self, careplan_id: str, said: Said, if_match: str | None) -> Resource:
        """``CarePlan/{id}/$progress``: report how an activity goes."""
        return await progress_careplan(self, careplan_id, said, if_match)

    async def proposal(self, careplan_id: str, said: Said, if_match: str | None) -> Resource:
        """``CarePlan/{id}/$proposal``: the patient proposes a change in their own words."""
        return await proposal_careplan(self, careplan_id, said, if_match)

    async def book(self, body: Resource) -> Resource:
        """``Appointment/$book``: book an agreed time in the Slot a proposed Appointment names,
        or in the Slot the caller holds it in."""
        return await book(self, body)

    async def hold(self, body: Resource, minutes: float) -> Resource:
        """``Appointment/$hold``: hold an agreed time in the Slot a proposed Appointment names,
        for the caller to book within ``minutes``."""
        return await hold(self, body, minutes)

    async def release(self, body: Resource) -> Resource:
        """``Appointment/$release``: let go of the hold on an agreed time."""
        return await release(self, body)
