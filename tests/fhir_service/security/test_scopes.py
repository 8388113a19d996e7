"""SMART scopes: which strings grant what, which grant nothing, and how grants add up."""

from __future__ import annotations

import doctest

import pytest

import fhir_service.security.scopes
from fhir_service.security.scopes import Context, Permission, Scope, granted, parse_scopes


@pytest.mark.parametrize(
    ("raw", "context", "resource_type", "permissions"),
    [
        ("patient/CarePlan.rs", "patient", "CarePlan", "rs"),
        ("user/*.cruds", "user", "*", "cruds"),
        ("system/Slot.rs", "system", "Slot", "rs"),
        ("user/Goal.c", "user", "Goal", "c"),
        ("system/Appointment.cud", "system", "Appointment", "cud"),
        ("patient/CarePlan.read", "patient", "CarePlan", "rs"),
        ("user/CarePlan.write", "user", "CarePlan", "cud"),
        ("system/CarePlan.*", "system", "CarePlan", "cruds"),
        ("user/*.*", "user", "*", "cruds"),
    ],
)
def test_a_v2_or_v1_resource_scope_parses_to_its_context_type_and_permissions(
    raw: str, context: Context, resource_type: str, permissions: str
) -> None:
    assert parse_scopes([raw]) == (Scope(context, resource_type, frozenset(permissions)),)


@pytest.mark.parametrize(
    "raw",
    [
        "openid",
        "fhirUser",
        "launch/patient",
        "launch",
        "offline_access",
        "online_access",
        "patient/Observation.rs?category=laboratory",
        "patient/CarePlan.rs?status=active",
        "patient/CarePlan.sr",
        "user/CarePlan.dc",
        "patient/CarePlan.rr",
        "user/CarePlan.ccruds",
        "patient/CarePlan.x",
        "patient/CarePlan.rx",
        "patient/CarePlan.",
        "patient/CarePlan",
        "patient/careplan.rs",
        "admin/CarePlan.r",
        "Patient/CarePlan.rs",
        "user/CarePlan.RS",
        "user/CarePlan.READ",
        "user/CarePlan.r*",
        "user/C.r",
        " patient/CarePlan.rs",
        "patient/CarePlan.rs ",
        "",
    ],
)
def test_a_scope_that_is_not_a_well_formed_resource_scope_grants_nothing(raw: str) -> None:
    assert parse_scopes([raw]) == ()


def test_only_the_resource_scopes_survive_among_others() -> None:
    raw = ["openid", "patient/CarePlan.rs", "fhirUser", "patient/CarePlan.sr", "user/Goal.read"]

    assert [str(s) for s in parse_scopes(raw)] == ["patient/CarePlan.rs", "user/Goal.rs"]


def test_parsed_scopes_come_out_sorted_whatever_the_input_order() -> None:
    raw = ["user/Goal.rs", "patient/CarePlan.rs", "system/Appointment.cruds"]

    assert parse_scopes(raw) == parse_scopes(reversed(raw))
    assert [str(s) for s in parse_scopes(raw)] == sorted(raw)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("patient/CarePlan.rs", "patient/CarePlan.rs"),
        ("user/*.cruds", "user/*.cruds"),
        ("user/CarePlan.read", "user/CarePlan.rs"),
        ("user/CarePlan.write", "user/CarePlan.cud"),
        ("system/Slot.*", "system/Slot.cruds"),
        ("system/Slot.ud", "system/Slot.ud"),
    ],
)
def test_a_scope_prints_in_v2_form_with_letters_in_cruds_order(raw: str, text: str) -> None:
    [scope] = parse_scopes([raw])

    assert str(scope) == text


def test_a_scope_built_with_letters_in_any_order_still_prints_them_in_cruds_order() -> None:
    assert str(Scope("user", "Goal", frozenset("sdurc"))) == "user/Goal.cruds"


@pytest.mark.parametrize(
    ("raw", "resource_type", "permission", "expected"),
    [
        ("patient/CarePlan.rs", "CarePlan", "r", True),
        ("patient/CarePlan.rs", "CarePlan", "s", True),
        ("patient/CarePlan.rs", "CarePlan", "c", False),
        ("patient/CarePlan.rs", "CarePlan", "u", False),
        ("patient/CarePlan.rs", "CarePlan", "d", False),
        ("patient/CarePlan.rs", "Goal", "r", False),
        ("user/*.cruds", "CarePlan", "d", True),
        ("user/*.cruds", "AuditEvent", "c", True),
        ("user/*.rs", "Goal", "u", False),
        ("user/CarePlan.write", "CarePlan", "u", True),
        ("user/CarePlan.write", "CarePlan", "r", False),
        ("user/CarePlan.read", "CarePlan", "s", True),
        ("user/CarePlan.read", "CarePlan", "c", False),
        ("system/CarePlan.cruds", "Careplan", "r", False),
        ("system/CarePlan.cruds", "*", "r", False),
    ],
)
def test_a_scope_grants_only_its_own_permissions_on_its_own_type(
    raw: str, resource_type: str, permission: Permission, expected: bool
) -> None:
    [scope] = parse_scopes([raw])

    assert scope.grants(resource_type, permission) is expected


@pytest.mark.parametrize(
    ("raw", "resource_type", "permission", "contexts"),
    [
        (["patient/CarePlan.rs", "system/CarePlan.rs"], "CarePlan", "r", {"patient", "system"}),
        (["patient/CarePlan.rs", "system/CarePlan.rs"], "CarePlan", "u", set()),
        (["patient/CarePlan.rs", "user/CarePlan.cruds"], "CarePlan", "u", {"user"}),
        (["patient/*.rs", "user/Goal.r"], "Goal", "r", {"patient", "user"}),
        (["patient/*.rs", "user/Goal.r"], "CarePlan", "r", {"patient"}),
        (["user/*.cruds"], "Subscription", "c", {"user"}),
        (["patient/CarePlan.sr", "openid"], "CarePlan", "r", set()),
        ([], "CarePlan", "r", set()),
    ],
)
def test_granted_is_the_union_of_contexts_whose_scopes_allow_the_permission(
    raw: list[str], resource_type: str, permission: Permission, contexts: set[str]
) -> None:
    assert granted(parse_scopes(raw), resource_type, permission) == frozenset(contexts)


def test_the_module_doctests_pass() -> None:
    result = doctest.testmod(fhir_service.security.scopes)

    assert result.attempted > 0
    assert result.failed == 0
