"""``GET /labels``: the names of every code the JSON facade uses, in the reader's language.

The names change only with a release, so the answer is cached for an hour by anyone on the way
and revalidated by its ETag; it holds no patient data.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response, status
from pydantic import BaseModel, ConfigDict, Field

from fhir_service.api.labels import Labels, labels
from fhir_service.api.languages import (
    LANGUAGE_HEADERS,
    AcceptLanguage,
    LanguageQuery,
    language_headers,
    negotiated_language,
)
from fhir_service.mapping import Language

__all__ = ["LabelSet", "router"]

router = APIRouter(tags=["labels"])

_CACHE_CONTROL = "public, max-age=3600"
_CACHING_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {
        "description": "A strong validator of this language's names.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {"description": _CACHE_CONTROL, "schema": {"type": "string"}},
    **LANGUAGE_HEADERS,
}

IfNoneMatch = Annotated[
    str | None,
    Header(
        alias="If-None-Match",
        description="ETags of names already held: the answer is 304 when they are current.",
    ),
]


class LabelSet(BaseModel):
    """The name of every code of every code table, in one language."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    language: Language = Field(description="The language of ``labels``, as Content-Language.")
    labels: Labels


@router.get(
    "/labels",
    response_model=LabelSet,
    responses={
        200: {"description": "Every code table's names.", "headers": _CACHING_HEADERS},
        304: {
            "description": "Not Modified: the names of the ETag in If-None-Match are current.",
            "headers": _CACHING_HEADERS,
        },
    },
)
async def read_labels(
    lang: LanguageQuery = None,
    accept_language: AcceptLanguage = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The names of the codes of every code table (statuses, owners, categories, roles, kinds,
    relationships, schedule units) in Swedish, Norwegian or English, for a client to show.
    """
    language = negotiated_language(lang, accept_language)
    body, etag = _answer(language)
    headers = {"ETag": etag, "Cache-Control": _CACHE_CONTROL, **language_headers(language)}
    if _matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@cache
def _answer(language: Language) -> tuple[bytes, str]:
    """The body in ``language`` and its ETag: a digest of the body, so it changes with it."""
    body = LabelSet(language=language, labels=labels(language)).model_dump_json().encode()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    # If-None-Match compares weakly (RFC 9110 §13.1.2): W/"x" stands for "x".
    return "*" in tags or etag in (tag.removeprefix("W/") for tag in tags)
