"""How the FHIR endpoint answers: the one place its routes' outcomes become HTTP.

Routes hand `answer` the work of one call to the caller's records (`CallerRecords`); what
comes back is said in this service's addresses (`rebased`), a resource with its ``ETag``,
``Last-Modified``, ``Location`` and what ``Prefer`` asks for, a Bundle with its paging links
pointing here. Every refusal, of the records (`fhir_service.records.errors`), of the contract
store or of HAPI, becomes its OperationOutcome here and nowhere else. Only JSON is spoken:
asking for XML gets 406.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import Request, Response

from fhir_service import errors
from fhir_service.api.audit_trail import refused_in
from fhir_service.api.fhir.bodies import BodyError
from fhir_service.api.fhir.outcomes import fhir_response, outcome
from fhir_service.api.fhir.subsetting import Subset, SubsetError, subset_of, subsetted
from fhir_service.api.problems import said_to_caller, status_of

__all__ = ["answer", "base_url", "bundle_answer", "preferred", "rebased", "resource_answer"]

Resource = dict[str, Any]

_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})
_JSON_ACCEPTED = frozenset({"*/*", "application/*", "application/json", "application/fhir+json"})


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
    """Run ``work`` unless the format is refused; its refusals as OperationOutcomes."""
    not_json = _not_json(request)
    if not_json is not None:
        return not_json
    try:
        return await work()
    except errors.ServiceError as exc:
        return refused(request, exc)
    except BodyError as exc:
        return exc.outcome()
    except SubsetError as exc:
        return outcome(400, "invalid", str(exc))


def refused(request: Request, exc: errors.ServiceError) -> Response:
    """The OperationOutcome answering ``exc``; the audit record is told why the caller was
    refused. What the FHIR store's failures mean for the caller depends on whether they wrote."""
    if exc.refusal is not None:
        refused_in(request, exc.refusal)
    status = status_of(exc, invalid=400)
    issues = exc.issues
    if isinstance(exc, errors.OutcomeUnknownError | errors.UnavailableError | errors.UpstreamError):
        issues = [errors.issue(said_to_caller(exc, reads=_reads(request)), exc.code)]
    headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return fhir_response({"resourceType": "OperationOutcome", "issue": issues}, status, headers)


def _reads(request: Request) -> bool:
    return request.method == "GET" or request.url.path.endswith("/_search")


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


def resource_answer(
    request: Request, hapi_base: str, resource: Resource, status: int = 200
) -> Response:
    """``resource`` (in HAPI's addresses) as the answer, in ours.

    A write's answer (a create's 201, an update's 200) names the version written in
    ``Location`` and ``Content-Location``, as HAPI does, for clients that take the id from
    there, and is what ``Prefer: return=`` asks for. A read says ``Last-Modified``, is cut to
    ``_summary``/``_elements``, and answers a conditional read (``If-None-Match``,
    ``If-Modified-Since``) of an unchanged resource with 304.
    """
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
        wanted = preferred(request)
        if wanted == "minimal":
            return Response(status_code=status, headers=headers)
        if wanted == "OperationOutcome":
            done = {"severity": "information", "code": "informational", "diagnostics": "written"}
            body = {"resourceType": "OperationOutcome", "issue": [done]}
            return fhir_response(body, status, headers)
    elif _unchanged(request, headers.get("ETag"), modified):
        return Response(status_code=304, headers=headers)
    else:
        subset, _ = subset_of(list(request.query_params.multi_items()))
        resource = subsetted(resource, subset)
    return fhir_response(rebased(resource, hapi_base, ours), status, headers)


def bundle_answer(
    request: Request,
    hapi_base: str,
    bundle: Resource,
    page_path: str,
    self_url: str | None = None,
    subset: Subset | None = None,
) -> Response:
    """A Bundle page (in HAPI's addresses) as the answer, in ours: its ``self`` link is
    ``self_url``, else the request's; its paging links lead to ``page_path`` here and carry
    the cut; its matches are cut to ``subset``, what was included comes whole, as HAPI gives
    it."""
    entries = bundle.get("entry", [])
    if subset is not None and not subset.whole:
        entries = [
            {**e, "resource": subsetted(e["resource"], subset)}
            if "resource" in e and e.get("search", {}).get("mode", "match") == "match"
            else e
            for e in entries
        ]
    ours = base_url(request)
    links = []
    for link in bundle.get("link", []):
        relation, url = link.get("relation"), str(link.get("url", ""))
        if relation == "self":
            continue
        if "_getpages=" in url:
            asked = "" if subset is None else urlencode(subset.params())
            url = f"{ours}/{page_path}?{'&'.join(filter(None, [urlsplit(url).query, asked]))}"
        links.append({**link, "url": url})
    links.insert(0, {"relation": "self", "url": self_url or str(request.url)})
    answered = {**bundle, "link": links, "entry": entries}
    return fhir_response(rebased(answered, hapi_base, ours))


def _modified(resource: Resource) -> datetime | None:
    """When ``resource`` last changed, to the second (HTTP dates have no fractions)."""
    updated = resource.get("meta", {}).get("lastUpdated")
    try:
        return datetime.fromisoformat(str(updated)).astimezone(UTC).replace(microsecond=0)
    except ValueError:
        return None


def preferred(request: Request) -> str | None:
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
