"""SMART App Launch v2 scopes: what a token lets its holder do with which resource types.

A resource scope reads ``<context>/<type>.<permissions>``: the context is ``patient``, ``user`` or
``system``, the type a FHIR resource type or ``*``, and the permissions a subset of ``cruds``
(create, read, update, delete, search) in that order. The v1 forms ``read``, ``write`` and ``*``
are read as ``rs``, ``cud`` and ``cruds``. Anything else (``openid``, ``launch/patient``, a scope
with a query such as ``?category=...``, a misspelt one) grants nothing: a scope we do not
understand must not widen access.

>>> [str(s) for s in parse_scopes(["patient/CarePlan.rs", "openid", "user/*.read"])]
['patient/CarePlan.rs', 'user/*.rs']
>>> granted(parse_scopes(["system/CarePlan.cruds"]), "CarePlan", "u")
frozenset({'system'})
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Context", "Permission", "Scope", "granted", "parse_scopes"]

Context = Literal["patient", "user", "system"]
Permission = Literal["c", "r", "u", "d", "s"]

_PATTERN = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.([a-z*]+)")
_V2_ORDER = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope: ``context/resource_type.permissions``."""

    context: Context
    resource_type: str
    permissions: frozenset[str]

    def grants(self, resource_type: str, permission: Permission) -> bool:
        """Whether this scope allows ``permission`` on ``resource_type``."""
        return self.resource_type in ("*", resource_type) and permission in self.permissions

    def __str__(self) -> str:
        letters = "".join(p for p in _V2_ORDER if p in self.permissions)
        return f"{self.context}/{self.resource_type}.{letters}"


def parse_scopes(raw: Iterable[str]) -> tuple[Scope, ...]:
    """The resource scopes among ``raw``; other and malformed scopes are dropped."""
    scopes = (_parse(s) for s in raw)
    return tuple(sorted((s for s in scopes if s is not None), key=str))


def granted(scopes: Iterable[Scope], resource_type: str, permission: Permission) -> frozenset[str]:
    """The contexts in which ``scopes`` allow ``permission`` on ``resource_type``."""
    return frozenset(s.context for s in scopes if s.grants(resource_type, permission))


def _parse(text: str) -> Scope | None:
    match = _PATTERN.fullmatch(text)
    if match is None:
        return None
    context, resource_type, permissions = match.groups()
    letters = _V1.get(permissions, permissions)
    # v2 letters must come in cruds order, each at most once: "rs" is a scope, "sr" is a typo.
    if not letters or not _is_ordered_subset(letters):
        return None
    return Scope(_context(context), resource_type, frozenset(letters))


def _is_ordered_subset(letters: str) -> bool:
    position = -1
    for letter in letters:
        index = _V2_ORDER.find(letter)
        if index <= position:
            return False
        position = index
    return True


def _context(text: str) -> Context:
    if text == "patient":
        return "patient"
    if text == "user":
        return "user"
    return "system"
