"""Our CapabilityStatement: exactly the types, interactions, search parameters and profiles the
FHIR endpoint offers, at this service's address.

Search parameters are HAPI's for each type plus ours from ``profiles/searchparameters``: the
endpoint passes them on, and what comes back is guarded whatever they select. Nothing of HAPI's
own (its software, its address, its other types and operations) is shown.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_service import __version__
from fhir_service.api.fhir.types import CONTRACT_TYPES, INTERACTIONS
from fhir_service.mapping import urls
from fhir_service.sync import CONFORMANCE_TYPES, conformance_resources

__all__ = ["statement_from"]

Resource = dict[str, Any]

_PROFILES = {
    "CarePlan": [urls.PROFILE_CAREPLAN],
    "CareTeam": [urls.PROFILE_CARETEAM],
    "Appointment": [urls.PROFILE_APPOINTMENT],
    "HealthcareService": [urls.PROFILE_TIME_TYPE],
}
_FHIR_INTERACTIONS = {
    "read": "read",
    "vread": "vread",
    "history": "history-instance",
    "history-type": "history-type",
    "search": "search-type",
    "create": "create",
    "update": "update",
}
_OPERATIONS = {
    "coherent-plan": f"{urls.BASE}/OperationDefinition/coherent-plan",
    "find": f"{urls.BASE}/OperationDefinition/appointment-find",
    "hold": f"{urls.BASE}/OperationDefinition/appointment-hold",
    "book": f"{urls.BASE}/OperationDefinition/appointment-book",
    "release": f"{urls.BASE}/OperationDefinition/appointment-release",
    "propose": f"{urls.BASE}/OperationDefinition/careplan-propose",
    "sign": f"{urls.BASE}/OperationDefinition/careplan-sign",
    "progress": f"{urls.BASE}/OperationDefinition/careplan-progress",
    "proposal": f"{urls.BASE}/OperationDefinition/careplan-proposal",
}
_VALIDATE = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
_SMART = "http://terminology.hl7.org/CodeSystem/restful-security-service"


@cache
def _our_search_parameters() -> tuple[Resource, ...]:
    return tuple(r for r in conformance_resources() if r["resourceType"] == "SearchParameter")


def statement_from(
    hapi_statement: Resource, base: str, oauth_uris: Resource | None = None
) -> Resource:
    """Our statement for the endpoint at ``base``, from HAPI's ``hapi_statement``."""
    hapi_resources = {
        r.get("type"): r
        for rest in hapi_statement.get("rest", [])
        for r in rest.get("resource", [])
        if isinstance(r, dict)
    }
    ours = _our_search_parameters()
    resources = []
    for kind, offered in INTERACTIONS.items():
        search_params = {
            str(p.get("name")): {
                k: v for k, v in p.items() if k in ("name", "definition", "type", "documentation")
            }
            for p in hapi_resources.get(kind, {}).get("searchParam", [])
        }
        # Ours are offered from the moment they are loaded, before HAPI's cached statement
        # names them.
        for parameter in ours:
            if kind in parameter.get("base", []):
                search_params.setdefault(
                    parameter["code"],
                    {
                        "name": parameter["code"],
                        "definition": parameter["url"],
                        "type": parameter["type"],
                        "documentation": parameter.get("description", ""),
                    },
                )
        entry: Resource = {
            "type": kind,
            "interaction": [
                {"code": _FHIR_INTERACTIONS[i]} for i in offered if i in _FHIR_INTERACTIONS
            ],
            # An update may name the version it changes (If-Match), and is refused if that is
            # not the current one.
            "versioning": "versioned-update" if "update" in offered else "versioned",
            "readHistory": "history" in offered,
            "searchParam": [search_params[name] for name in sorted(search_params)],
        }
        # What _include follows: HAPI's, and ours that name a record.
        includes = list(hapi_resources.get(kind, {}).get("searchInclude", []))
        includes += [
            f"{kind}:{p['code']}"
            for p in ours
            if kind in p.get("base", []) and p.get("type") == "reference"
        ]
        if includes and "search" in offered:
            entry["searchInclude"] = list(dict.fromkeys(includes))
        # What _revinclude brings: HAPI's from the types served here, and ours that point at
        # the type. Provenance:target
        # (who changed a contract's record, who agreed) is for callers who may read Provenance;
        # others are refused the parameter, not given less.
        revincludes = [
            r
            for r in hapi_resources.get(kind, {}).get("searchRevInclude", [])
            if str(r).split(":")[0] in INTERACTIONS
        ]
        revincludes += [
            f"{base_type}:{p['code']}"
            for p in ours
            if p.get("type") == "reference" and kind in p.get("target", [])
            for base_type in p.get("base", [])
        ]
        if kind in CONTRACT_TYPES:
            revincludes.append("Provenance:target")
        if revincludes and "search" in offered:
            entry["searchRevInclude"] = sorted(set(revincludes))
        if kind in _PROFILES:
            entry["supportedProfile"] = _PROFILES[kind]
        operations = [
            {"name": name, "definition": definition}
            for name, definition in _OPERATIONS.items()
            if name in offered
        ]
        if operations:
            entry["operation"] = operations
        resources.append(entry)
    # The patient's leaves for relatives (api/fhir/consents.py).
    resources.append(
        {
            "type": "Consent",
            "interaction": [{"code": c} for c in ("read", "search-type", "create", "update")],
            "documentation": "The patient's leaves for relatives, for the patient's own token: "
            "search and read their own; create one naming the relative in provision.actor (a "
            "national identifier, or RelatedPerson/<id>), provision.period and provision.action "
            "(access; correct lets the relative report on their own activities); revoke one by "
            "updating its status to inactive.",
        }
    )
    # Our conformance resources, for validators: read by id, found by canonical url.
    resources += [
        {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [
                {"name": "url", "type": "uri"},
                {"name": "version", "type": "token"},
                {"name": "_id", "type": "token"},
            ],
        }
        for kind in sorted(CONFORMANCE_TYPES)
    ]
    # A contract's transaction Bundle checked as POST / would check it, writing nothing.
    resources.append(
        {
            "type": "Bundle",
            "operation": [{"name": "validate", "definition": _VALIDATE}],
        }
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": hapi_statement.get("date", "2026-01-01"),
        "publisher": "Patient contracts FHIR service",
        "kind": "instance",
        "software": {"name": "fhir-service", "version": __version__},
        "implementation": {"description": "Patient contracts on FHIR R4", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    **({"extension": [oauth_uris]} if oauth_uris else {}),
                    "service": [{"coding": [{"system": _SMART, "code": "SMART-on-FHIR"}]}],
                    "description": "OAuth2 bearer JWTs with SMART v2 scopes; patients see their "
                    "own records, care units their own contracts, auditors the audit trail. "
                    "Discovery: .well-known/smart-configuration.",
                },
                "resource": resources,
                # A transaction Bundle of one contract's records creates or changes it.
                "interaction": [{"code": "transaction"}],
            }
        ],
    }
