"""The one tree of refusals: every kind any part raises is answered by each facade, with a
status, and only the two facades say the same refusal differently where HTTP says they must."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import fhir_service
from fhir_service import errors
from fhir_service.api.problems import said_to_caller, status_of
from fhir_service.fhir import (
    ConflictError,
    HapiOutcomeUnknownError,
    HapiUnavailableError,
    InvalidRequestError,
)
from fhir_service.store import StaleVersionError


def _kinds() -> set[type[errors.ServiceError]]:
    """Every kind of refusal defined anywhere in the package."""
    for module in pkgutil.walk_packages(fhir_service.__path__, "fhir_service."):
        if ".migrations" not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[errors.ServiceError]] = set()
    stack: list[type[errors.ServiceError]] = [errors.ServiceError]
    while stack:
        kind = stack.pop()
        found.add(kind)
        stack += kind.__subclasses__()
    return found - {errors.ServiceError}


KINDS = sorted(_kinds(), key=lambda k: f"{k.__module__}.{k.__qualname__}")


def test_the_parts_raise_their_own_kinds_of_the_tree() -> None:
    modules = {kind.__module__.split(".")[1] for kind in KINDS}

    # The store, booking, HAPI's client, security, the service DB, the contract and mapping
    # refuse in the tree's terms, not in HTTP's.
    assert {"store", "booking", "fhir", "security", "servicedb", "contract", "mapping"} <= modules


@pytest.mark.parametrize("kind", KINDS, ids=[k.__qualname__ for k in KINDS])
def test_every_kind_has_a_status_in_both_facades(kind: type[errors.ServiceError]) -> None:
    refusal = kind.__new__(kind)
    json_status = status_of(refusal, invalid=422)
    fhir_status = status_of(refusal, invalid=400)

    assert 400 <= json_status <= 599
    if issubclass(kind, errors.InvalidRequestError):
        # FHIR says a malformed request is 400; the JSON facade, like FastAPI, 422.
        assert (json_status, fhir_status) == (422, 400)
    else:
        assert json_status == fhir_status


def test_no_part_below_the_web_layer_carries_an_http_status_of_its_own() -> None:
    carrying = [
        f"{k.__module__}.{k.__qualname__}"
        for k in KINDS
        if not k.__module__.startswith("fhir_service.fhir")
        and any("status" in vars(c) for c in k.__mro__ if c.__module__.startswith("fhir_service"))
    ]

    assert carrying == []


def test_a_refusal_raised_from_hapis_error_keeps_hapis_outcome_for_the_operator() -> None:
    said = {"resourceType": "OperationOutcome", "issue": [{"code": "conflict"}]}
    with pytest.raises(StaleVersionError) as caught:
        _stale_after(ConflictError(409, "HAPI-0550: version conflict", said))

    assert caught.value.hapi_outcome == said
    assert caught.value.current_version == 4
    # The caller hears the store's words, not HAPI's.
    assert "HAPI" not in str(caught.value.issues)
    assert StaleVersionError("c-1", 3, 4).hapi_outcome is None


def _stale_after(conflict: ConflictError) -> None:
    try:
        raise conflict
    except ConflictError as exc:
        raise StaleVersionError("c-1", 3, 4) from exc


@pytest.mark.parametrize(
    ("refusal", "reads", "said"),
    [
        (HapiUnavailableError("http://hapi", "cannot connect"), False, "nothing was written"),
        (HapiUnavailableError("http://hapi", "cannot connect"), True, "Retry after the pause"),
        (HapiOutcomeUnknownError("http://hapi", "no answer"), False, "outcome of this write is"),
        (InvalidRequestError(400, "HAPI-1234: bad"), False, "refused the write; nothing was"),
        (InvalidRequestError(400, "HAPI-1234: bad"), True, "failed to answer"),
        (StaleVersionError("c-1", 3, 4), False, "is at version 4, not 3"),
    ],
)
def test_what_a_failure_of_the_fhir_store_means_for_the_caller_is_said_plainly(
    refusal: errors.ServiceError, reads: bool, said: str
) -> None:
    text = said_to_caller(refusal, reads=reads)

    assert said in text
    assert "HAPI" not in text
    assert "http://hapi" not in text
    # A read is never told about writing, an unknown outcome never that nothing was written.
    assert not (reads and "written" in text)
    assert not (isinstance(refusal, errors.OutcomeUnknownError) and "nothing was" in text)
