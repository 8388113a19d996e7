"""The FHIR endpoint under ``/fhir``: read, vread, history and search of a contract's records,
and of the audit trail for auditors, in FHIR R4 JSON.

HAPI stays internal: every answer names this service's base URL (fullUrls, paging links), every
resource in it has passed `FhirGuard`, and errors are OperationOutcomes. Only JSON is spoken;
asking for XML gets 406.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Path, Request, Response

from fhir_service.api.audit_trail import AuditTrail
from fhir_service.api.deps import AccessDep, AuditTrailDep, HapiClientDep, SettingsDep, StoreDep
from fhir_service.api.fhir.bodies import BodyError, fhir_body, parameter
from fhir_service.api.fhir.capability import capability_statement
from fhir_service.api.fhir.guard import FhirGuard
from fhir_service.api.fhir.outcomes import FHIR_JSON, fhir_response, outcome
from fhir_service.api.fhir.plan import coherent_plan_bundle
from fhir_service.api.fhir.subsetting import Subset, SubsetError, subset_of, subsetted
from fhir_service.api.fhir.types import INTERACTIONS, route_name
from fhir_service.audit.records import Touched
from fhir_service.fhir import (
    GoneError,
    HapiClient,
    HapiRequestError,
    HapiUnavailableError,
    NotFoundError,
)
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import system_for, system_of
from fhir_service.mapping.ownership import contract_of
from fhir_service.security.access import Access, Denial
from fhir_service.security.smart import endpoints, oauth_uris
from fhir_service.sync.search_criteria import UNIT_OF_CONTRACT

__all__ = ["answer", "base_url", "guarded_resource", "outside", "rebased", "router"]

Resource = dict[str, Any]

router = APIRouter(prefix="/fhir", tags=["fhir"])

ResourceId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="The resource's logical id.")
]
VersionId = Annotated[str, Path(pattern=r"^[0-9]{1,10}$", description="The version id.")]

_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_JSON_ACCEPTED = frozenset({"*/*", "application/*", "application/json", "application/fhir+json"})
# Answers that would count what the caller may not see, or carry it inside another resource.
_UNGUARDED = {"_summary": {"count"}, "_total": None, "_contained": None, "_containedType": None}
_MOST_AUDITED = 50


def _not_json(request: Request) -> Response | None:
    """A 406 when the caller wants a format other than JSON; None when JSON will do."""
    asked = request.query_params.get("_format")
    if asked is not None and asked not in _JSON_FORMATS:
        return outcome(406, "not-supported", f"_format={asked}: this endpoint speaks JSON only")
    accept = request.headers.get("accept")
    if accept:
        types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
        if not types & _JSON_ACCEPTED:
            return outcome(
                406, "not-supported", f"Accept: {accept}: this endpoint speaks JSON only"
            )
    return None


async def answer(request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
    """Run ``work`` unless the format is refused, turning HAPI's failures into outcomes."""
    refused = _not_json(request)
    if refused is not None:
        return refused
    try:
        return await work()
    except (NotFoundError, GoneError):
        return outcome(404, "not-found", "no such resource")
    except HapiUnavailableError:
        response = outcome(503, "transient", "the FHIR store is unavailable; try again")
        response.headers["Retry-After"] = "5"
        return response
    except HapiRequestError as exc:
        if exc.status >= 500:
            return outcome(502, "exception", "the FHIR store failed to answer")
        # HAPI's own words on a bad search (unknown parameter, bad value); its address is not in
        # them, but they are rebased all the same.
        return outcome(400, "invalid", exc.diagnostics.replace(request.app.state.hapi.base_url, ""))


def base_url(request: Request) -> str:
    """This service's FHIR base, as the caller addressed it."""
    return f"{str(request.base_url).rstrip('/')}/fhir"


def rebased(value: Any, hapi: str, ours: str) -> Any:
    """``value`` with every string naming HAPI's base URL naming ours instead."""
    if isinstance(value, str):
        return ours + value[len(hapi) :] if value.startswith(hapi) else value
    if isinstance(value, dict):
        return {k: rebased(v, hapi, ours) for k, v in value.items()}
    if isinstance(value, list):
        return [rebased(v, hapi, ours) for v in value]
    return value


def _note(trail: AuditTrail, guard: FhirGuard, resources: list[Resource]) -> None:
    for resource in resources[:_MOST_AUDITED]:
        kind, rid = str(resource.get("resourceType")), resource.get("id")
        version = resource.get("meta", {}).get("versionId")
        reference = f"{kind}/{rid}" + (f"/_history/{version}" if version else "")
        patients = ((system_of(p), p.value) for p in guard.patients_of(resource))
        # Named by its contract, so that "who read contract X" finds reads through FHIR too.
        contract_id = contract_of(resource)
        contract = None if contract_id is None else (urls.ID_CONTRACT, contract_id)
        trail.saw(Touched(kind, identifier=contract, reference=reference), patients)


async def _guarded_bundle(
    request: Request,
    hapi: HapiClient,
    guard: FhirGuard,
    trail: AuditTrail,
    bundle: Resource,
    page_path: str,
    self_url: str | None = None,
    subset: Subset | None = None,
    walled_search: bool = False,
) -> Response:
    """A Bundle page from HAPI, minus what the caller may not see, in our addresses; its
    ``self`` link is ``self_url``, else the request's. Its matches are cut to ``subset``.
    ``walled_search``: HAPI was asked for the caller's records only, so its ``total`` counts
    nothing the caller may not see, as long as the walls left every match of the page."""
    entries = [e for e in bundle.get("entry", []) if isinstance(e, dict)]
    with_resource = [e for e in entries if isinstance(e.get("resource"), dict)]
    screened = await guard.screened(e["resource"] for e in with_resource)
    shown = {id(e): r for e, r in zip(with_resource, screened, strict=True) if r is not None}
    # Deletions in a history carry no resource; only an unrestricted reader sees them.
    kept = [
        {**e, "resource": shown[id(e)]} if id(e) in shown else e
        for e in entries
        if id(e) in shown or (guard.unrestricted and "resource" not in e)
    ]
    matches = [e for e in with_resource if e.get("search", {}).get("mode", "match") == "match"]
    whole_page = all(id(e) in shown for e in matches)
    if not guard.unrestricted and not (walled_search and whole_page):
        # A total would count what was left out.
        bundle.pop("total", None)
    _note(trail, guard, [e["resource"] for e in kept if "resource" in e])
    if subset is not None and not subset.whole:
        # Matches are cut as asked; what was included comes whole, as HAPI gives it.
        kept = [
            {**e, "resource": subsetted(e["resource"], subset)}
            if "resource" in e and e.get("search", {}).get("mode", "match") == "match"
            else e
            for e in kept
        ]
    bundle["entry"] = kept
    ours = base_url(request)
    links = []
    for link in bundle.get("link", []):
        relation, url = link.get("relation"), str(link.get("url", ""))
        if relation == "self":
            url = self_url or str(request.url)
        elif "_getpages=" in url:
            # The cut asked for is ours to make on every page: the link carries it on.
            asked = "" if subset is None else urlencode(subset.params())
            url = f"{ours}/{page_path}?{'&'.join(filter(None, [urlsplit(url).query, asked]))}"
        links.append({**link, "url": url})
    bundle["link"] = links
    return fhir_response(rebased(bundle, hapi.base_url, ours))


def _narrowed(
    kind: str, guard: FhirGuard, params: list[tuple[str, str]], ids: frozenset[str]
) -> list[tuple[str, str]]:
    """The search's parameters plus the caller's walls, so that HAPI pages hold the caller's."""
    walls = guard.access.compartment
    if walls.patient is not None:
        name = "patient" if kind == "Appointment" else "subject"
        return [*params, (name, ",".join(f"Patient/{i}" for i in sorted(ids)))]
    if walls.organization is not None and kind == "CarePlan":
        unit = f"{system_for(walls.organization.kind)}|{walls.organization.value}"
        return [*params, (UNIT_OF_CONTRACT, unit)]
    return params


def _empty(self_url: str) -> Response:
    return fhir_response(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": self_url}],
            "entry": [],
        }
    )


def _add_routes(kind: str) -> None:
    offered = INTERACTIONS[kind]

    async def search(
        request: Request, hapi: HapiClientDep, access: AccessDep, trail: AuditTrailDep
    ) -> Response:
        params = list(request.query_params.multi_items())
        return await answer(request, lambda: searched(request, hapi, access, trail, params))

    async def search_posted(
        request: Request, hapi: HapiClientDep, access: AccessDep, trail: AuditTrailDep
    ) -> Response:
        # FHIR's POST [type]/_search: the parameters in a form body, as well as in the URL.
        form = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        params = [*request.query_params.multi_items(), *form]
        return await answer(request, lambda: searched(request, hapi, access, trail, params))

    async def searched(
        request: Request,
        hapi: HapiClient,
        access: Access,
        trail: AuditTrail,
        params: list[tuple[str, str]],
    ) -> Response:
        try:
            subset, params = subset_of(params)
        except SubsetError as exc:
            return outcome(400, "invalid", str(exc))
        guard = FhirGuard(access, hapi)
        if not guard.unrestricted:
            for name, value in params:
                refused = _UNGUARDED.get(name.split(":")[0], set())
                if name.split(":")[0] in _UNGUARDED and (refused is None or value in refused):
                    return outcome(
                        400, "not-supported", f"{name}={value} is not offered to this caller"
                    )
        # A search posted is linked to, and on record, as the same search by GET.
        posted = f"{base_url(request)}/{kind}?{urlencode(params)}"
        self_url = str(request.url) if request.method == "GET" else posted
        if request.method != "GET":
            trail.query = urlencode(params)
        ids = await guard.patient_ids()
        if guard.access.compartment.patient is not None and not ids:
            return _empty(self_url)
        bundle = await hapi.page(f"/{kind}", _narrowed(kind, guard, params, ids))
        # A unit's CarePlans are asked of HAPI by unit, and the unit sees all of its own; a
        # patient's are not (their drafts are withheld), nor other types (not asked by unit).
        walls = guard.access.compartment
        exact = kind == "CarePlan" and walls.patient is None and walls.organization is not None
        return await _guarded_bundle(
            request, hapi, guard, trail, bundle, f"{kind}/_page", self_url, subset, exact
        )

    async def page(
        request: Request, hapi: HapiClientDep, access: AccessDep, trail: AuditTrailDep
    ) -> Response:
        async def work() -> Response:
            query = parse_qsl(request.url.query, keep_blank_values=True)
            if not any(name == "_getpages" for name, _ in query):
                return outcome(400, "required", "a paging link needs its _getpages parameter")
            try:
                subset, query = subset_of(query)
            except SubsetError as exc:
                return outcome(400, "invalid", str(exc))
            bundle = await hapi.page("", query)
            guard = FhirGuard(access, hapi)
            return await _guarded_bundle(
                request, hapi, guard, trail, bundle, f"{kind}/_page", subset=subset
            )

        return await answer(request, work)

    async def read(
        resource_id: ResourceId,
        request: Request,
        hapi: HapiClientDep,
        access: AccessDep,
        trail: AuditTrailDep,
    ) -> Response:
        async def work() -> Response:
            resource = await hapi.read(kind, resource_id)
            return await guarded_resource(request, hapi, access, trail, resource)

        return await answer(request, work)

    async def vread(
        resource_id: ResourceId,
        version_id: VersionId,
        request: Request,
        hapi: HapiClientDep,
        access: AccessDep,
        trail: AuditTrailDep,
    ) -> Response:
        async def work() -> Response:
            resource = await hapi.vread(kind, resource_id, version_id)
            return await guarded_resource(request, hapi, access, trail, resource)

        return await answer(request, work)

    async def history(
        resource_id: ResourceId,
        request: Request,
        hapi: HapiClientDep,
        access: AccessDep,
        trail: AuditTrailDep,
    ) -> Response:
        async def work() -> Response:
            guard = FhirGuard(access, hapi)
            current = await hapi.read(kind, resource_id)
            if (await guard.screened([current]))[0] is None:
                return outside(trail)
            try:
                subset, params = subset_of(list(request.query_params.multi_items()))
            except SubsetError as exc:
                return outcome(400, "invalid", str(exc))
            bundle = await hapi.page(f"/{kind}/{resource_id}/_history", params)
            path = f"{kind}/{resource_id}/_history"
            return await _guarded_bundle(request, hapi, guard, trail, bundle, path, subset=subset)

        return await answer(request, work)

    async def plan(
        request: Request,
        hapi: HapiClientDep,
        store: StoreDep,
        access: AccessDep,
        trail: AuditTrailDep,
    ) -> Response:
        async def work() -> Response:
            asked = request.query_params.get("patient")
            base = base_url(request)
            return await coherent_plan_bundle(
                asked, hapi, store, access, trail, base, str(request.url)
            )

        return await answer(request, work)

    async def plan_posted(
        request: Request,
        hapi: HapiClientDep,
        store: StoreDep,
        access: AccessDep,
        trail: AuditTrailDep,
    ) -> Response:
        # An operation by POST, as FHIR clients call it by default: its parameters in a
        # Parameters resource.
        async def work() -> Response:
            try:
                body = await fhir_body(request)
            except BodyError as exc:
                return exc.outcome()
            asked = parameter(body, "patient")
            base = base_url(request)
            self_url = f"{base}/{kind}/$coherent-plan?{urlencode({'patient': asked or ''})}"
            return await coherent_plan_bundle(asked, hapi, store, access, trail, base, self_url)

        return await answer(request, work)

    handlers: dict[str, tuple[str, Callable[..., Awaitable[Response]]]] = {
        # Paths with a fixed last step come before the read, which would take it for an id.
        "coherent-plan": (f"/{kind}/$coherent-plan", plan),
        "page": (f"/{kind}/_page", page),
        "search": (f"/{kind}", search),
        "history": (f"/{kind}/{{resource_id}}/_history", history),
        "vread": (f"/{kind}/{{resource_id}}/_history/{{version_id}}", vread),
        "read": (f"/{kind}/{{resource_id}}", read),
    }
    for interaction, (path, handler) in handlers.items():
        if interaction in offered:
            router.add_api_route(
                path,
                handler,
                methods=["GET"],
                name=route_name(interaction, kind),
                summary=f"{interaction} {kind}",
                response_class=Response,
                responses={200: {"content": {FHIR_JSON: {}}}},
            )
    if "coherent-plan" in offered:
        router.add_api_route(
            f"/{kind}/$coherent-plan",
            plan_posted,
            methods=["POST"],
            name=route_name("coherent-plan", kind),
            summary=f"coherent-plan {kind} (a Parameters body)",
            response_class=Response,
            responses={200: {"content": {FHIR_JSON: {}}}},
        )
    if "search" in offered:
        router.add_api_route(
            f"/{kind}/_search",
            search_posted,
            methods=["POST"],
            name=route_name("search", kind),
            summary=f"search {kind} (parameters in a form body)",
            response_class=Response,
            responses={200: {"content": {FHIR_JSON: {}}}},
        )


async def guarded_resource(
    request: Request,
    hapi: HapiClient,
    access: Access,
    trail: AuditTrail,
    resource: Resource,
    status: int = 200,
) -> Response:
    """``resource`` as the answer, if the guard admits it (else 404), in our addresses.

    A write's answer (a create's 201, an update's 200) names the version written in
    ``Location`` and ``Content-Location``, as HAPI does, for clients that take the id from there,
    and is what ``Prefer: return=`` asks for. A read says ``Last-Modified`` and answers a
    conditional read (``If-None-Match``, ``If-Modified-Since``) of an unchanged resource with
    304.
    """
    guard = FhirGuard(access, hapi)
    shown = (await guard.screened([resource]))[0]
    if shown is None:
        return outside(trail)
    resource = shown
    _note(trail, guard, [resource])
    headers = {}
    version = resource.get("meta", {}).get("versionId")
    if version:
        headers["ETag"] = f'W/"{version}"'
    modified = _modified(resource)
    if modified is not None:
        headers["Last-Modified"] = format_datetime(modified, usegmt=True)
    ours = base_url(request)
    if request.method in ("POST", "PUT"):
        where = f"{ours}/{resource['resourceType']}/{resource['id']}"
        headers["Location"] = f"{where}/_history/{version}" if version else where
        headers["Content-Location"] = headers["Location"]
        wanted = _preferred(request)
        if wanted == "minimal":
            return Response(status_code=status, headers=headers)
        if wanted == "OperationOutcome":
            done = {"severity": "information", "code": "informational", "diagnostics": "written"}
            body = {"resourceType": "OperationOutcome", "issue": [done]}
            return fhir_response(body, status, headers)
    elif _unchanged(request, headers.get("ETag"), modified):
        return Response(status_code=304, headers=headers)
    else:
        try:
            subset, _ = subset_of(list(request.query_params.multi_items()))
        except SubsetError as exc:
            return outcome(400, "invalid", str(exc))
        resource = subsetted(resource, subset)
    return fhir_response(rebased(resource, hapi.base_url, ours), status, headers)


def _modified(resource: Resource) -> datetime | None:
    """When ``resource`` last changed, to the second (HTTP dates have no fractions)."""
    updated = resource.get("meta", {}).get("lastUpdated")
    try:
        return datetime.fromisoformat(str(updated)).astimezone(UTC).replace(microsecond=0)
    except ValueError:
        return None


def _preferred(request: Request) -> str | None:
    """What ``Prefer: return=...`` asks a write's answer to be: minimal, representation or
    OperationOutcome."""
    for preference in request.headers.get("prefer", "").split(";"):
        name, _, value = preference.strip().partition("=")
        if name == "return":
            return value.strip().strip('"')
    return None


def _unchanged(request: Request, etag: str | None, modified: datetime | None) -> bool:
    """Whether a conditional read asks about the version it would get."""
    matched = request.headers.get("if-none-match")
    if matched is not None:
        # Weak or strong, as a client copied it: the version is what is compared.
        asked = {m.strip().removeprefix("W/") for m in matched.split(",")}
        return etag is not None and (etag.removeprefix("W/") in asked or "*" in asked)
    since = request.headers.get("if-modified-since")
    if since is None or modified is None:
        return False
    try:
        return modified <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


@router.get(
    "/metadata",
    name="fhir_capabilities",
    response_class=Response,
    responses={200: {"content": {FHIR_JSON: {}}}},
)
async def capabilities(request: Request, hapi: HapiClientDep, settings: SettingsDep) -> Response:
    """Our CapabilityStatement: the types, interactions, search parameters and profiles offered,
    and where tokens come from (SMART's ``oauth-uris``)."""

    async def work() -> Response:
        statement = await hapi.capability_statement()
        service = str(request.base_url).rstrip("/")
        uris = oauth_uris(endpoints(settings, service))
        return fhir_response(capability_statement(statement, base_url(request), uris))

    return await answer(request, work)


def outside(trail: AuditTrail) -> Response:
    """404 for a resource outside the caller's walls, with the refusal in the audit trail."""
    # Answered as absent: whether another patient's record exists is not the caller's business.
    trail.refused(Denial.OUTSIDE_COMPARTMENT.value)
    return outcome(404, "not-found", "no such resource")


for _kind in INTERACTIONS:
    _add_routes(_kind)
