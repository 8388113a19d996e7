"""Every route a patient's token reaches, asked about what the patient may not be shown.

A patient is never shown drafts the unit has not put to them, anything labelled restricted or very
restricted (README, "What a patient is shown"), or anything of another patient's: such a contract,
goal or agreed time is, to them, as if it did not exist. This module finds every route the
``patient`` role's scopes reach (the access rules decide, as they do for a request) and asks each,
with the patient's token and against the real HAPI, about a patient who has a draft, an agreed
contract labelled restricted, and an agreed contract with a very-restricted goal and two very-
restricted agreed times, one of them booked; another patient of the same unit has a contract too
(``tests/data/faults/patient-walls.json``). No answer, body or header, may carry anything of those:
not a text (each carries this run's marker), a key or id (each carries this run's tag), nor the
FHIR reference of a withheld record, unless the request named it. No request changes an Appointment
or a Slot in HAPI; writes to withheld times answer 404.

``CALLS`` holds what each route is asked. A route a patient reaches that is missing from it fails
`test_every_route_a_patient_reaches_is_asked`, so a new route cannot escape.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from fhir_service.api import create_app
from fhir_service.api.access_rules import RULES, Protected
from fhir_service.api.fhir.types import CONTRACT_TYPES, REFERENCED_TYPES
from fhir_service.contract import Confidentiality, IdentifierKind
from fhir_service.mapping import urls
from fhir_service.mapping.elements import confidentiality_of
from fhir_service.mapping.identifier_systems import system_for
from fhir_service.security.access import AccessDeniedError, claimed_identifier, decide
from fhir_service.security.roles import ROLE_SCOPES, Role
from fhir_service.security.tokens import Principal
from fhir_service.settings import Settings
from tests.auth import TestIssuer
from tests.booking import UNIT, far_hours, publish
from tests.service_app import ready_app
from tests.support import load_data, unique_personnummer

EXAMPLE = (
    Path(__file__).parents[2] / "profiles" / "examples" / "contracts" / "elderly-psychiatry.json"
)
FHIR_JSON = {"Content-Type": "application/fhir+json"}
FHIR_KINDS = CONTRACT_TYPES
# What the records name; the patient and their relatives are walled, the rest is not theirs.
NAMED_KINDS = REFERENCED_TYPES
Route = tuple[str, str]


@dataclass(frozen=True)
class Call:
    """One request to send with the patient's token, and the status it must get (None: any
    status but a server error, which would mean the route was not really asked)."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    form: dict[str, str] = field(default_factory=dict)
    """Parameters sent as a form body (a search by POST), instead of ``body``."""


@dataclass(frozen=True)
class World:
    """The patient's contracts as stored, and what the calls need to name them."""

    patient: str
    patient_token: str
    marker: str
    tag: str
    agreed: str
    draft: str
    restricted: str
    other: str
    other_patient: str
    keys: dict[str, str]
    slots: list[str]
    start: datetime
    shown: dict[str, list[str]]
    withheld: dict[str, list[str]]
    pages: dict[str, list[str]]
    webhooks: list[str]
    webhook: dict[str, Any]
    relative_token: str
    """A relative's, under a leave the patient granted: they see what the patient sees."""
    others_leave: str
    """A leave the other patient granted."""
    form_token: str
    """What the patient's page puts in its forms for this patient."""

    @property
    def walled_times(self) -> list[tuple[str, str]]:
        """(contract, key) of every agreed time the patient may not see."""
        return [
            (self.agreed, self.keys["walled-visit"]),
            (self.agreed, self.keys["walled-followup"]),
            (self.draft, self.keys["draft-visit"]),
            (self.restricted, self.keys["restricted-visit"]),
            (self.other, self.keys["other-visit"]),
        ]


Calls = Callable[[World], list[Call]]


def _contracts(w: World) -> list[Call]:
    return [
        Call("GET", "/contracts", status=200),
        Call("GET", "/contracts", {"patient": w.patient}, status=200),
        Call("GET", "/contracts", {"patient": w.patient, "status": "draft"}, status=200),
        Call("GET", "/contracts", {"careUnit": UNIT, "count": "50"}),
    ]


def _contract(w: World) -> list[Call]:
    return [Call("GET", f"/contracts/{w.agreed}", status=200)] + [
        Call("GET", f"/contracts/{c}", status=404) for c in (w.draft, w.restricted, w.other)
    ]


def _plan(w: World) -> list[Call]:
    path = f"/patients/{w.patient}/plan"
    return [
        Call("GET", path, status=200),
        Call("GET", path, headers={"Accept": "text/html"}, status=200),
        Call("GET", path, {"lang": "en"}, headers={"Accept": "text/html"}, status=200),
        Call("GET", path, {"lang": "nb"}, status=200),
    ]


def _slots(w: World) -> list[Call]:
    asked = {
        "careUnit": UNIT,
        "timeType": "nurse-visit",
        "from": w.start.isoformat(),
        "to": (w.start + timedelta(days=1)).isoformat(),
    }
    return [
        Call("GET", "/booking/slots", asked, status=200),
        Call("GET", "/booking/slots", {**asked, "contract": w.agreed, "agreedTime": "open-visit"}),
    ] + [
        Call("GET", "/booking/slots", {**asked, "contract": c, "agreedTime": k}, status=404)
        for c, k in w.walled_times
    ]


def _time_types(w: World) -> list[Call]:
    # Not patient data: what a unit calls its times is shown to whoever finds them.
    return [
        Call("GET", f"/booking/care-units/{UNIT}/time-types", status=200),
        Call("GET", "/booking/care-units/hsa-id|SE2321000065-9999/time-types", status=404),
    ]


def _change(action: str) -> Calls:
    def calls(w: World) -> list[Call]:
        body: dict[str, str] | None = (
            {"reason": "Sjuk"}
            if action == "cancel"
            else None
            if action == "release"
            else {"slot": w.slots[-1]}
        )
        return [
            Call("POST", f"/booking/contracts/{c}/times/{k}/{action}", body=body, status=404)
            for c, k in w.walled_times
        ]

    return calls


def _times(w: World) -> list[Call]:
    return [Call("GET", f"/booking/patients/{w.patient}/times", status=200)]


def _breaches(w: World) -> list[Call]:
    return [Call("GET", "/booking/care-guarantee/breaches", {"careUnit": UNIT}, status=200)]


def _find(w: World) -> list[Call]:
    asked = {
        "start": w.start.isoformat(),
        "end": (w.start + timedelta(days=1)).isoformat(),
        "organization": f"{system_for(IdentifierKind.HSA_ID)}|{UNIT.split('|')[1]}",
        "visit-type": f"{urls.CS_TIME_TYPE}|nurse-visit",
    }
    path = "/fhir/Appointment/$find"
    return [
        Call("GET", path, asked, status=200),
        Call("GET", path, {**asked, "agreed-time": f"{w.agreed}/open-visit"}, status=200),
    ] + [
        Call("GET", path, {**asked, "agreed-time": f"{c}/{k}"}, status=404)
        for c, k in w.walled_times
    ]


def _appointment_operation(operation: str) -> Calls:
    # Booking, holding or letting go of a time withheld from the patient: not there for them.
    def calls(w: World) -> list[Call]:
        def chosen(contract: str, key: str) -> dict[str, Any]:
            return {
                "resourceType": "Appointment",
                "status": "proposed",
                "slot": [{"reference": f"Slot/{w.slots[-1]}"}],
                "identifier": [{"system": urls.ID_AGREED_TIME, "value": f"{contract}/{key}"}],
            }

        path = f"/fhir/Appointment/${operation}"
        return [
            Call("POST", path, body=chosen(c, k), headers=FHIR_JSON, status=404)
            for c, k in w.walled_times
        ]

    return calls


def _webhooks(w: World) -> list[Call]:
    return [Call("GET", "/webhooks", status=200)]


def _register(w: World) -> list[Call]:
    return [Call("POST", "/webhooks", body=w.webhook, status=201)]


def _webhook(method: str, which: int, status: int) -> Calls:
    # Each its own webhook, so the order of the tests does not matter.
    return lambda w: [Call(method, f"/webhooks/{w.webhooks[which]}", status=status)]


def _fhir_search(kind: str) -> Calls:
    def calls(w: World) -> list[Call]:
        every = [{}, {"_include": "*"}, {"_revinclude": "*"}, {"_count": "1"}]
        by_identifier = [
            {"identifier": f"{urls.ID_CONTRACT}|{c}"} for c in (w.draft, w.restricted, w.other)
        ]
        if kind == "Appointment":
            by_identifier += [
                {"identifier": f"{urls.ID_AGREED_TIME}|{c}/{k}"} for c, k in w.walled_times
            ]
        return [Call("GET", f"/fhir/{kind}", p) for p in every + by_identifier]

    return calls


def _fhir_search_posted(kind: str) -> Calls:
    """The same searches as a form body to ``_search``."""

    def calls(w: World) -> list[Call]:
        searches = _fhir_search(kind)(w)
        return [Call("POST", f"/fhir/{kind}/_search", form=c.params) for c in searches]

    return calls


def _fhir_reads(kind: str, suffix: str) -> Calls:
    def calls(w: World) -> list[Call]:
        return [Call("GET", f"/fhir/{kind}/{i}{suffix}", status=200) for i in w.shown[kind][:1]] + [
            Call("GET", f"/fhir/{kind}/{i}{suffix}", status=404) for i in w.withheld[kind]
        ]

    return calls


def _fhir_type_history(kind: str) -> Calls:
    def calls(w: World) -> list[Call]:
        since = (w.start - timedelta(days=1000)).isoformat()
        return [
            Call("GET", f"/fhir/{kind}/_history", status=200),
            Call("GET", f"/fhir/{kind}/_history", {"_count": "100", "_since": since}, status=200),
        ]

    return calls


def _named_search(kind: str) -> Calls:
    def calls(w: World) -> list[Call]:
        every: list[dict[str, str]] = [{}, {"_revinclude": "*"}, {"_count": "1"}]
        every += [{"_id": i} for i in w.withheld.get(kind, [])]
        return [Call("GET", f"/fhir/{kind}", p, status=200) for p in every]

    return calls


def _named_search_posted(kind: str) -> Calls:
    def calls(w: World) -> list[Call]:
        searches = _named_search(kind)(w)
        return [Call("POST", f"/fhir/{kind}/_search", form=c.params) for c in searches]

    return calls


def _named_page(kind: str) -> Calls:
    # Any paging link is followed through any type's _page: the unit's CarePlan pages hold
    # the patient's withheld records, and must not leak through another type's route.
    return lambda w: [
        Call("GET", page.replace("/fhir/CarePlan/_page", f"/fhir/{kind}/_page"))
        for page in w.pages["CarePlan"]
    ]


def _find_posted(w: World) -> list[Call]:
    return [
        Call(
            "POST",
            c.path,
            body={
                "resourceType": "Parameters",
                "parameter": [{"name": n, "valueString": v} for n, v in c.params.items()],
            },
            headers=FHIR_JSON,
            status=c.status,
        )
        for c in _find(w)
    ]


def _fhir_page(kind: str) -> Calls:
    # The care unit's paging link, followed by the patient: its pages hold withheld records.
    return lambda w: [Call("GET", page) for page in w.pages[kind]]


def _coherent_plan(w: World) -> list[Call]:
    patient = f"{system_for(IdentifierKind.PERSONNUMMER)}|{w.patient.split('|')[1]}"
    return [Call("GET", "/fhir/CarePlan/$coherent-plan", {"patient": patient}, status=200)]


def _coherent_plan_posted(w: World) -> list[Call]:
    patient = f"{system_for(IdentifierKind.PERSONNUMMER)}|{w.patient.split('|')[1]}"
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueString": patient}],
    }
    return [
        Call(
            "POST", "/fhir/CarePlan/$coherent-plan", body=parameters, headers=FHIR_JSON, status=200
        )
    ]


def _sign(w: World) -> list[Call]:
    # Nothing withheld from them is theirs to answer; their agreed contract is agreed already.
    version = {"If-Match": 'W/"1"'}
    agree, decline = {"decision": "agree"}, {"decision": "decline", "comment": "Nej tack."}
    return [
        Call("POST", f"/contracts/{c}/sign", body=body, headers=version, status=404)
        for c in (w.draft, w.restricted, w.other)
        for body in (agree, decline)
    ] + [Call("POST", f"/contracts/{w.agreed}/sign", body=agree, headers=version)]


def _progress(w: World) -> list[Call]:
    # On their own activity of their agreed contract it is made, and answered with what they
    # may see; the care's is refused; nothing withheld from them is there.
    path = "/contracts/{}/activities/{}/progress"
    body = {"status": "in-progress", "note": "Det går bra."}
    return [
        Call("POST", path.format(c, "walk"), body=body, status=404)
        for c in (w.draft, w.restricted, w.other)
    ] + [
        Call("POST", path.format(w.agreed, "sodium"), body=body, status=403),
        Call("POST", path.format(w.agreed, "walk"), body=body, status=200),
    ]


def _proposals(w: World) -> list[Call]:
    # A wish on their agreed contract is taken, and answered with what they may see; a change of
    # a goal withheld from them is as of one that is not there; nothing withheld is there.
    path = "/contracts/{}/proposals"
    wish = {"kind": "wish", "text": "Att få ringa i stället för att komma."}
    walled = {"kind": "goal", "text": "Ändra målet.", "about": f"walled-goal-{w.tag}"}
    return [
        Call("POST", path.format(c), body=wish, status=404)
        for c in (w.draft, w.restricted, w.other)
    ] + [
        Call("POST", path.format(w.agreed), body=walled, status=422),
        Call("POST", path.format(w.agreed), body=wish, status=200),
    ]


def _leave(relative: str) -> dict[str, Any]:
    start = datetime.now(UTC)
    return {
        "relative": {"identifier": {"kind": "personnummer", "value": relative}},
        "period": {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()},
    }


def _grant_leave(w: World) -> list[Call]:
    return [Call("POST", "/consents", body=_leave(unique_personnummer()), status=201)]


def _leaves(w: World) -> list[Call]:
    return [Call("GET", "/consents", status=200)]


def _revoke_leave(w: World) -> list[Call]:
    # Another patient's leave is not there for them.
    return [Call("POST", f"/consents/{w.others_leave}/revoke", status=404)]


def _page(w: World, *below: str) -> str:
    return "/".join((f"/patients/{w.patient}/plan", *below))


_HTML = {"Accept": "text/html"}


def _page_contract(w: World) -> list[Call]:
    # The page of a contract withheld from them is as of one that is not there.
    return [Call("GET", _page(w, "contracts", w.agreed), headers=_HTML, status=200)] + [
        Call("GET", _page(w, "contracts", c), headers=_HTML, status=404)
        for c in (w.draft, w.restricted, w.other)
    ]


def _page_answer(w: World) -> list[Call]:
    answer = {"decision": "agree", "version": "1", "form_token": w.form_token}
    return [
        Call("POST", _page(w, "contracts", c), form=answer, headers=_HTML, status=404)
        for c in (w.draft, w.restricted, w.other)
    ] + [Call("POST", _page(w, "contracts", w.agreed), form=answer, headers=_HTML)]


def _page_progress_form(w: World) -> list[Call]:
    return [
        Call("GET", _page(w, "contracts", c, "activities", "walk", "progress"), status=404)
        for c in (w.draft, w.restricted, w.other)
    ] + [
        Call("GET", _page(w, "contracts", w.agreed, "activities", k, "progress"), status=200)
        for k in ("walk", "sodium")
    ]


def _page_progress(w: World) -> list[Call]:
    report = {"status": "in-progress", "note": "Det går bra.", "form_token": w.form_token}
    path = "contracts", "{}", "activities", "{}", "progress"
    return [
        Call("POST", _page(w, *path).format(c, "walk"), form=report, status=404)
        for c in (w.draft, w.restricted, w.other)
    ] + [
        Call("POST", _page(w, *path).format(w.agreed, "sodium"), form=report, status=403),
        # Made, then the plan it redirects to.
        Call("POST", _page(w, *path).format(w.agreed, "walk"), form=report, status=200),
    ]


def _page_proposal_form(w: World) -> list[Call]:
    return [Call("GET", _page(w, "contracts", w.agreed, "proposals"), status=200)] + [
        Call("GET", _page(w, "contracts", c, "proposals"), status=404)
        for c in (w.draft, w.restricted, w.other)
    ]


def _page_proposal(w: World) -> list[Call]:
    wish = {"kind": "wish", "text": "Att få ringa.", "form_token": w.form_token}
    walled = {**wish, "kind": "goal", "about": f"walled-goal-{w.tag}"}
    return [
        Call("POST", _page(w, "contracts", c, "proposals"), form=wish, status=404)
        for c in (w.draft, w.restricted, w.other)
    ] + [
        Call("POST", _page(w, "contracts", w.agreed, "proposals"), form=walled, status=422),
        Call("POST", _page(w, "contracts", w.agreed, "proposals"), form=wish, status=200),
    ]


def _page_relatives(w: World) -> list[Call]:
    return [Call("GET", _page(w, "relatives"), status=200)]


def _page_grant(w: World) -> list[Call]:
    leave = {"kind": "personnummer", "number": unique_personnummer(), "until": "2099-01-01"}
    return [Call("POST", _page(w, "relatives"), form={**leave, "form_token": w.form_token})]


def _page_revoke_form(w: World) -> list[Call]:
    return [Call("GET", _page(w, "relatives", w.others_leave, "revoke"), status=404)]


def _page_revoke(w: World) -> list[Call]:
    revoke = {"form_token": w.form_token}
    return [Call("POST", _page(w, "relatives", w.others_leave, "revoke"), form=revoke, status=404)]


def _fhir_leaves(w: World) -> list[Call]:
    return [Call("GET", "/fhir/Consent", status=200)]


def _fhir_leave(w: World) -> list[Call]:
    return [Call("GET", f"/fhir/Consent/{w.others_leave}", status=404)]


def _fhir_grant(w: World) -> list[Call]:
    consent = {
        "resourceType": "Consent",
        "provision": {
            "period": {"end": "2099-01-01"},
            "actor": [
                {
                    "reference": {
                        "identifier": {
                            "system": system_for(IdentifierKind.PERSONNUMMER),
                            "value": unique_personnummer(),
                        }
                    }
                }
            ],
        },
    }
    return [Call("POST", "/fhir/Consent", body=consent, headers=FHIR_JSON, status=201)]


def _fhir_revoke(w: World) -> list[Call]:
    # Another patient's leave is not there for them, whatever the body says.
    consent = {"resourceType": "Consent", "id": w.others_leave, "status": "inactive"}
    path = f"/fhir/Consent/{w.others_leave}"
    return [Call("PUT", path, body=consent, headers=FHIR_JSON, status=404)]


def _fhir_act(operation: str, parameters: dict[str, str]) -> Calls:
    # On what is withheld from them, nothing is there; on their agreed contract's CarePlan
    # (shown to them) the act is made or refused, and answered with what they may see.
    def calls(w: World) -> list[Call]:
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": n, "valueString": v} for n, v in parameters.items()],
        }
        path = f"/fhir/CarePlan/{{}}/${operation}"
        return [
            Call("POST", path.format(i), body=body, headers=FHIR_JSON, status=404)
            for i in w.withheld["CarePlan"]
        ] + [
            Call("POST", path.format(i), body=body, headers=FHIR_JSON) for i in w.shown["CarePlan"]
        ]

    return calls


def _fhir_sign(w: World) -> list[Call]:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "decision", "valueCode": "agree"}],
    }
    headers = {**FHIR_JSON, "If-Match": 'W/"1"'}
    path = "/fhir/CarePlan/{}/$sign"
    return [
        Call("POST", path.format(i), body=body, headers=headers, status=404)
        for i in w.withheld["CarePlan"]
    ] + [Call("POST", path.format(i), body=body, headers=headers) for i in w.shown["CarePlan"]]


def _fhir_create(w: World) -> list[Call]:
    return [
        Call(
            "POST",
            "/fhir/Appointment",
            body={
                "resourceType": "Appointment",
                "status": "proposed",
                "identifier": [{"system": urls.ID_AGREED_TIME, "value": f"{c}/{k}-copy"}],
                "participant": [{"status": "needs-action"}],
            },
            headers=FHIR_JSON,
            status=403,
        )
        for c, k in w.walled_times
    ]


def _fhir_update(w: World) -> list[Call]:
    return [
        Call(
            "PUT",
            f"/fhir/Appointment/{i}",
            body={"resourceType": "Appointment", "id": i, "status": "cancelled"},
            headers={**FHIR_JSON, "If-Match": 'W/"1"'},
            status=403,
        )
        for i in w.withheld["Appointment"]
    ]


CALLS: dict[Route, Calls] = {
    ("GET", "/contracts"): _contracts,
    ("GET", "/contracts/{contract_id}"): _contract,
    ("GET", "/patients/{patient}/plan"): _plan,
    ("GET", "/booking/slots"): _slots,
    ("GET", "/booking/care-units/{unit}/time-types"): _time_types,
    ("POST", "/booking/contracts/{contract_id}/times/{key}/book"): _change("book"),
    ("POST", "/booking/contracts/{contract_id}/times/{key}/hold"): _change("hold"),
    ("POST", "/booking/contracts/{contract_id}/times/{key}/release"): _change("release"),
    ("POST", "/booking/contracts/{contract_id}/times/{key}/cancel"): _change("cancel"),
    ("POST", "/booking/contracts/{contract_id}/times/{key}/rebook"): _change("rebook"),
    ("GET", "/booking/patients/{patient}/times"): _times,
    ("GET", "/booking/care-guarantee/breaches"): _breaches,
    ("GET", "/fhir/Appointment/$find"): _find,
    ("POST", "/fhir/Appointment/$find"): _find_posted,
    ("POST", "/fhir/Appointment/$book"): _appointment_operation("book"),
    ("POST", "/fhir/Appointment/$hold"): _appointment_operation("hold"),
    ("POST", "/fhir/Appointment/$release"): _appointment_operation("release"),
    ("GET", "/fhir/CarePlan/$coherent-plan"): _coherent_plan,
    ("POST", "/fhir/CarePlan/$coherent-plan"): _coherent_plan_posted,
    **{
        route: calls
        for kind in FHIR_KINDS
        for route, calls in {
            ("GET", f"/fhir/{kind}"): _fhir_search(kind),
            ("POST", f"/fhir/{kind}/_search"): _fhir_search_posted(kind),
            ("GET", f"/fhir/{kind}/_page"): _fhir_page(kind),
            ("GET", f"/fhir/{kind}/{{resource_id}}"): _fhir_reads(kind, ""),
            ("GET", f"/fhir/{kind}/{{resource_id}}/_history"): _fhir_reads(kind, "/_history"),
            ("GET", f"/fhir/{kind}/{{resource_id}}/_history/{{version_id}}"): _fhir_reads(
                kind, "/_history/1"
            ),
            ("GET", f"/fhir/{kind}/_history"): _fhir_type_history(kind),
        }.items()
    },
    **{
        route: calls
        for kind in NAMED_KINDS
        for route, calls in {
            ("GET", f"/fhir/{kind}"): _named_search(kind),
            ("POST", f"/fhir/{kind}/_search"): _named_search_posted(kind),
            ("GET", f"/fhir/{kind}/_page"): _named_page(kind),
            ("GET", f"/fhir/{kind}/{{resource_id}}"): _fhir_reads(kind, ""),
            ("GET", f"/fhir/{kind}/{{resource_id}}/_history"): _fhir_reads(kind, "/_history"),
            ("GET", f"/fhir/{kind}/{{resource_id}}/_history/{{version_id}}"): _fhir_reads(
                kind, "/_history/1"
            ),
            ("GET", f"/fhir/{kind}/_history"): _fhir_type_history(kind),
        }.items()
    },
    ("POST", "/fhir/Appointment"): _fhir_create,
    ("POST", "/contracts/{contract_id}/sign"): _sign,
    ("POST", "/contracts/{contract_id}/activities/{key}/progress"): _progress,
    ("POST", "/contracts/{contract_id}/proposals"): _proposals,
    ("POST", "/consents"): _grant_leave,
    ("GET", "/consents"): _leaves,
    ("POST", "/consents/{consent_id}/revoke"): _revoke_leave,
    ("GET", "/patients/{patient}/plan/contracts/{contract_id}"): _page_contract,
    ("POST", "/patients/{patient}/plan/contracts/{contract_id}"): _page_answer,
    ("GET", "/patients/{patient}/plan/contracts/{contract_id}/activities/{key}/progress"): (
        _page_progress_form
    ),
    ("POST", "/patients/{patient}/plan/contracts/{contract_id}/activities/{key}/progress"): (
        _page_progress
    ),
    ("GET", "/patients/{patient}/plan/contracts/{contract_id}/proposals"): _page_proposal_form,
    ("POST", "/patients/{patient}/plan/contracts/{contract_id}/proposals"): _page_proposal,
    ("GET", "/patients/{patient}/plan/relatives"): _page_relatives,
    ("POST", "/patients/{patient}/plan/relatives"): _page_grant,
    ("GET", "/patients/{patient}/plan/relatives/{consent_id}/revoke"): _page_revoke_form,
    ("POST", "/patients/{patient}/plan/relatives/{consent_id}/revoke"): _page_revoke,
    ("POST", "/fhir/CarePlan/{resource_id}/$sign"): _fhir_sign,
    ("GET", "/fhir/Consent"): _fhir_leaves,
    ("GET", "/fhir/Consent/{consent_id}"): _fhir_leave,
    ("POST", "/fhir/Consent"): _fhir_grant,
    ("PUT", "/fhir/Consent/{consent_id}"): _fhir_revoke,
    ("POST", "/fhir/CarePlan/{resource_id}/$progress"): _fhir_act(
        "progress", {"activity": "walk", "status": "in-progress", "note": "Bra."}
    ),
    ("POST", "/fhir/CarePlan/{resource_id}/$proposal"): _fhir_act(
        "proposal", {"kind": "wish", "text": "Att få ringa i stället."}
    ),
    ("PUT", "/fhir/Appointment/{resource_id}"): _fhir_update,
    ("POST", "/webhooks"): _register,
    ("GET", "/webhooks"): _webhooks,
    ("GET", "/webhooks/{webhook_id}"): _webhook("GET", 0, 200),
    ("DELETE", "/webhooks/{webhook_id}"): _webhook("DELETE", 1, 204),
}


def _patient_routes(role: Role = "patient") -> set[Route]:
    """Every (method, path) whose access rule the scopes of ``role`` (the patient, or a
    relative under their leave) satisfy."""
    patient = "personnummer|191212121212"
    principal = Principal(
        subject="a-patient",
        client_id="a-portal",
        scopes=frozenset(ROLE_SCOPES[role]),
        patient=patient,
    )
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            hapi_url="http://hapi.invalid/fhir", auth_local_issuer=True, data_dir=Path(directory)
        )
        routes = list(iter_route_contexts(create_app(settings).routes))
    reached = set()
    for route in routes:
        rule = RULES.get(route.name or "")
        if not isinstance(rule, Protected):
            continue
        try:
            decide(principal, rule.requirement, claimed_identifier(patient, patient=True))
        except AccessDeniedError:
            continue
        reached |= {(method, route.path) for method in route.methods or ()}
    return reached


def test_every_route_a_patient_reaches_is_asked() -> None:
    reached = _patient_routes()

    assert sorted(reached - set(CALLS)) == [], "patient-reachable routes missing from CALLS"
    assert sorted(set(CALLS) - reached) == [], "CALLS names routes a patient does not reach"


@pytest.fixture(scope="module")
def service(
    conformance_loaded: str, tmp_path_factory: pytest.TempPathFactory, issuer: TestIssuer
) -> Iterator[TestClient]:
    directory = tmp_path_factory.mktemp("walls")
    # The patient's webhooks go nowhere: their host is let through without being looked up.
    with ready_app(
        conformance_loaded,
        directory,
        issuer,
        webhook_allowed_hosts="*.example",
        webhook_allow_private_networks=True,
    ) as app:
        yield app


def _create(
    service: TestClient, clinic: dict[str, str], data: dict[str, Any], *, agree: bool
) -> None:
    created = service.post("/contracts", json=data, headers=clinic)
    assert created.status_code == 201, created.text
    if agree:
        agreed = service.post(
            f"/contracts/{data['id']}/agree",
            json=load_data("booking/agreements.json"),
            headers={**clinic, "If-Match": 'W/"1"'},
        )
        assert agreed.status_code == 200, agreed.text


def _fhir_ids(
    service: TestClient, contracts: dict[str, str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The FHIR ids of the contracts' records by type: those the patient may see (of the agreed
    contract, unlabelled), and those withheld from them (all the rest)."""
    store = service.app.state.service.store  # type: ignore[attr-defined]
    shown: dict[str, list[str]] = {kind: [] for kind in FHIR_KINDS + NAMED_KINDS}
    withheld: dict[str, list[str]] = {kind: [] for kind in FHIR_KINDS + NAMED_KINDS}
    for name, contract_id in contracts.items():
        stored = service.portal.call(store.records, contract_id)  # type: ignore[union-attr]
        for resource in (e["resource"] for e in stored.bundle["entry"]):
            kind, rid = resource["resourceType"], str(resource["id"])
            if kind in FHIR_KINDS:
                hidden = (
                    name != "agreed" or confidentiality_of(resource) is not Confidentiality.NORMAL
                )
                (withheld if hidden else shown)[kind].append(rid)
            elif kind in ("Patient", "RelatedPerson") and name == "other":
                withheld[kind].append(rid)  # the other patient, and theirs
            elif kind in NAMED_KINDS and name == "agreed" and rid not in shown[kind]:
                shown[kind].append(rid)
    return shown, withheld


def _pages(service: TestClient, clinic: dict[str, str], personnummer: str) -> dict[str, list[str]]:
    """For each type, the paging links of the care unit's search of the patient's records, one
    record to a page: all but the first, so they hold what is withheld from the patient."""
    patient = f"{system_for(IdentifierKind.PERSONNUMMER)}|{personnummer}"
    pages: dict[str, list[str]] = {}
    for kind in FHIR_KINDS:
        name = "patient" if kind == "Appointment" else "subject"
        found = service.get(
            f"/fhir/{kind}", params={f"{name}.identifier": patient, "_count": "1"}, headers=clinic
        )
        links = pages.setdefault(kind, [])
        while found.status_code == 200 and len(links) < 20:
            following = [k["url"] for k in found.json()["link"] if k["relation"] == "next"]
            if not following:
                break
            links += following
            found = service.get(following[0], headers=clinic)
        assert found.status_code == 200, found.text
        assert len(links) > 1, f"{kind}: the unit's search has one page"
    return pages


@pytest.fixture(scope="module")
def world(service: TestClient, issuer: TestIssuer) -> World:
    tag = uuid.uuid4().hex[:12]
    marker = f"walled-{uuid.uuid4().hex}"
    since = (datetime.now(UTC) - timedelta(days=100)).isoformat()
    data = load_data("faults/patient-walls.json", marker=marker, run=tag, since=since)
    clinic = issuer.headers("ehr", organization=UNIT)
    mine, theirs = unique_personnummer(), unique_personnummer()
    example = json.loads(EXAMPLE.read_text("utf-8"))
    unit = example["responsible_clinician"]["organization"]
    ids = {
        "draft": f"walls-draft-{tag}",
        "restricted": f"walls-restricted-{tag}",
        "agreed": f"walls-{uuid.uuid4().hex[:16]}",
        "other": f"walls-other-{tag}",
    }
    keys: dict[str, str] = {}
    for name, contract_id in ids.items():
        contract = copy.deepcopy(example)
        contract.update(data[name], id=contract_id, care_guarantee=data["care_guarantee"])
        contract["patient"]["identifier"]["value"] = theirs if name == "other" else mine
        for time in contract["agreed_times"]:
            time["organization"] = unit
            keys[time["key"].removesuffix(f"-{tag}")] = time["key"]
        _create(service, clinic, contract, agree=name != "draft")
    start = next(far_hours())
    slots = publish(service, clinic, [start + timedelta(hours=h) for h in range(6)])
    for (contract_id, key), slot in zip(
        [
            (ids["agreed"], keys["open-visit"]),
            (ids["agreed"], keys["walled-visit"]),
            (ids["draft"], keys["draft-visit"]),
            (ids["restricted"], keys["restricted-visit"]),
        ],
        slots,
        strict=False,
    ):
        booked = service.post(
            f"/booking/contracts/{contract_id}/times/{key}/book",
            json={"slot": slot},
            headers=clinic,
        )
        assert booked.status_code == 200, booked.text
    shown, withheld = _fhir_ids(service, ids)
    shown["Slot"] = slots[:1]
    slot = service.get(f"/fhir/Slot/{slots[0]}", headers=clinic)
    assert slot.status_code == 200, slot.text
    shown["Schedule"] = [slot.json()["schedule"]["reference"].split("/")[-1]]
    patient = f"personnummer|{mine}"
    token = issuer.token("patient", patient=patient, subject="the-walled-patient")
    webhook = {**data["webhook"], "patient": {"kind": "personnummer", "value": mine}}
    webhooks = []
    for _ in range(2):
        registered = service.post(
            "/webhooks", json=webhook, headers={"Authorization": f"Bearer {token}"}
        )
        assert registered.status_code == 201, registered.text
        webhooks.append(registered.json()["id"])
    as_patient = {"Authorization": f"Bearer {token}"}
    leave = service.post("/consents", json=_leave(unique_personnummer()), headers=as_patient)
    assert leave.status_code == 201, leave.text
    relative_token = issuer.token(
        "relative", patient=patient, subject="a-relative", fhirUser=leave.json()["fhir_user"]
    )
    others = issuer.headers("patient", patient=f"personnummer|{theirs}")
    others_leave = service.post("/consents", json=_leave(unique_personnummer()), headers=others)
    assert others_leave.status_code == 201, others_leave.text
    return World(
        form_token=service.app.state.form_tokens.make("the-walled-patient"),
        relative_token=relative_token,
        others_leave=others_leave.json()["id"],
        patient=patient,
        patient_token=token,
        marker=marker,
        tag=tag,
        agreed=ids["agreed"],
        draft=ids["draft"],
        restricted=ids["restricted"],
        other=ids["other"],
        other_patient=theirs,
        keys=keys,
        slots=slots,
        start=start,
        shown=shown,
        withheld=withheld,
        pages=_pages(service, clinic, mine),
        webhooks=webhooks,
        webhook=webhook,
    )


def _secrets(world: World) -> list[str]:
    """What no answer to the patient may carry: the withheld texts, keys and ids, and the
    other patient's identity."""
    return [world.marker, world.tag, world.other_patient]


def _references(world: World) -> list[str]:
    """The FHIR references of the records withheld from the patient."""
    return [f"{kind}/{i}" for kind, found in world.withheld.items() for i in found]


def _said(call: Call) -> str:
    """Everything the request itself says: what it names, its answer may repeat."""
    return " ".join(
        [call.path, json.dumps(call.params), json.dumps(call.body), json.dumps(call.form)]
    )


def _carries(text: str, secret: str) -> bool:
    # A reference must not be read into a longer one: Goal/12 is not in Goal/123.
    return re.search(rf"{re.escape(secret)}(?![A-Za-z0-9\-.])", text) is not None


def _held(service: TestClient, world: World) -> dict[str, str]:
    """The version and status of every Appointment of the patient's and of every Slot
    published for them, as HAPI holds them."""
    hapi = service.app.state.service.hapi  # type: ignore[attr-defined]
    versions = {}
    for kind, found in (
        ("Appointment", world.withheld["Appointment"] + world.shown["Appointment"]),
        ("Slot", world.slots),
    ):
        for i in found:
            resource = service.portal.call(hapi.read, kind, i)  # type: ignore[union-attr]
            versions[f"{kind}/{i}"] = f"{resource['meta']['versionId']} {resource['status']}"
    return versions


def _leaks(
    service: TestClient,
    world: World,
    calls: list[Call],
    secrets: list[str],
    token: str | None = None,
) -> list[str]:
    """Each call sent with the patient's token (or ``token``): a line for every answer that
    has an unexpected status or carries one of ``secrets`` the request did not name."""
    found = []
    for call in calls:
        url = urlsplit(call.path)
        answer = service.request(
            call.method,
            url.path,
            params={**dict(parse_qsl(url.query)), **call.params},
            **({"data": call.form} if call.form else {"json": call.body}),
            headers={"Authorization": f"Bearer {token or world.patient_token}", **call.headers},
        )
        said = f"{call.method} {call.path} {call.params}"
        status = answer.status_code
        if status >= 500 if call.status is None else status != call.status:
            found.append(f"{said}: {answer.status_code} {answer.text[:200]}")
        shown = answer.text + json.dumps(dict(answer.headers))
        found += [
            f"{said}: carries {secret}"
            for secret in secrets
            if secret not in _said(call) and _carries(shown, secret)
        ]
    return found


@pytest.mark.parametrize("route", sorted(CALLS), ids=" ".join)
def test_no_answer_to_a_patient_carries_what_is_withheld_from_them(
    service: TestClient, world: World, route: Route
) -> None:
    calls = CALLS[route](world)
    assert calls, f"{route}: no request made"
    before = _held(service, world)

    leaks = _leaks(service, world, calls, _secrets(world))

    assert leaks == [], "\n".join(leaks)
    assert _held(service, world) == before


def test_a_relative_with_leave_reads_exactly_what_the_patient_would(
    service: TestClient, world: World
) -> None:
    # Every read a relative's token reaches, asked as the patient's was: the same answers,
    # and nothing withheld from the patient.
    reads = [
        route
        for route in sorted(_patient_routes("relative"))
        if route[0] == "GET" or route[1].endswith(("/_search", "/$coherent-plan", "/$find"))
    ]
    assert len(reads) > 20
    calls = [c for route in reads for c in CALLS[route](world)]

    leaks = _leaks(service, world, calls, _secrets(world), world.relative_token)

    assert leaks == [], "\n".join(leaks)


def test_no_fhir_answer_names_a_record_withheld_from_the_patient(
    service: TestClient, world: World
) -> None:
    calls = [c for route in sorted(CALLS) if "/fhir" in route[1] for c in CALLS[route](world)]

    leaks = _leaks(service, world, calls, _references(world))

    assert leaks == [], "\n".join(leaks)
