"""A care unit's time type as FHIR: one ``HealthcareService`` per unit and time type (profile
``time-type-healthcareservice``), and back.

HealthcareService is what R4 has for "a service a unit offers, that patients book": Schedules
name it as their actor and Appointments as a participant, so a time type sits where booking
clients look for one. Its ``name`` is the name in the resource's ``language``, translated into
the others with the core ``translation`` extension; its ``type`` is the time type's code (our
CodeSystem ``time-type``); what R4 has no element for (minutes, patients' rights online, the
cut-off, appointmentType, the care-guarantee step, the unit's clock) is our extension
``time-type-rules``. Retired is ``active: false``: the booked times of a retired type are still
named by it. The identifier ``<unit>/<code>`` makes each one findable, and unique, in HAPI.

Reading one back says every problem at once, each at its FHIRPath expression.
"""

from __future__ import annotations

from typing import Any, cast, get_args

from pydantic import ValidationError

from fhir_service.contract import (
    Contract,
    Identifier,
    IdentifierKind,
    Language,
    Organization,
    OrganizationKind,
    TimeType,
    TimeTypes,
    known_zone,
)
from fhir_service.contract.problems import problems_of
from fhir_service.errors import Issue, UnprocessableError, issue
from fhir_service.mapping import elements as element
from fhir_service.mapping import urls
from fhir_service.mapping.identifier_systems import kind_for
from fhir_service.mapping.tables import care_guarantee_steps, code_table

__all__ = [
    "APPOINTMENT_TYPE_SYSTEM",
    "DefinedTimeType",
    "UnreadableTimeTypeError",
    "defined_time_type",
    "named_time_types",
    "step_problems",
    "time_type_identifier",
    "time_type_resource",
    "unit_kind_of",
    "unknown_time_types",
]

Resource = dict[str, Any]

APPOINTMENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0276"
_TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
_LANGUAGES: tuple[Language, ...] = get_args(Language)


class UnreadableTimeTypeError(UnprocessableError):
    """A HealthcareService that is no time type as the profile says one is; ``issues`` name
    every problem where it is."""

    title = "Invalid time type"


class DefinedTimeType:
    """One time type as its unit defined it: the unit, the unit's clock, and the type."""

    __slots__ = ("kind", "time_zone", "unit")

    def __init__(self, unit: Organization, time_zone: str, kind: TimeType) -> None:
        self.unit = unit
        self.time_zone = time_zone
        self.kind = kind

    @property
    def identifier(self) -> str:
        """The value of its identifier: ``<unit>/<code>``."""
        return time_type_identifier(self.unit.identifier, self.kind.code)


def time_type_identifier(unit: Identifier, code: str) -> str:
    """The identifier value of ``unit``'s time type ``code``."""
    return f"{element.key_of(unit)}/{code}"


def time_type_resource(defined: DefinedTimeType, language: Language) -> Resource:
    """The HealthcareService of ``defined``, named in ``language`` with the other names as
    translations (without id, meta or the Organization reference, which the writer adds)."""
    kind = defined.kind
    rules: list[Resource] = [
        {"url": "minutes", "valueDuration": element.duration(kind.minutes, "min")},
        {"url": "patientBook", "valueBoolean": kind.patient.book},
        {"url": "patientCancel", "valueBoolean": kind.patient.cancel},
        {"url": "patientRebook", "valueBoolean": kind.patient.rebook},
        {"url": "cancelCutoff", "valueDuration": element.duration(kind.cancel_cutoff_hours, "h")},
        {
            "url": "appointmentType",
            "valueCoding": {"system": APPOINTMENT_TYPE_SYSTEM, "code": kind.appointment_type},
        },
    ]
    if kind.care_guarantee_step is not None:
        rules.append({"url": "careGuaranteeStep", "valueCode": kind.care_guarantee_step})
    rules.append({"url": "timeZone", "valueCode": defined.time_zone})
    translations = [
        {
            "url": _TRANSLATION,
            "extension": [
                {"url": "lang", "valueCode": other},
                {"url": "content", "valueString": kind.names[other]},
            ],
        }
        for other in _LANGUAGES
        if other != language
    ]
    return {
        "resourceType": "HealthcareService",
        "meta": {"profile": [urls.PROFILE_TIME_TYPE]},
        "language": language,
        "extension": [{"url": urls.EXT_TIME_TYPE_RULES, "extension": rules}],
        "identifier": [{"system": urls.ID_TIME_TYPE, "value": defined.identifier}],
        "active": kind.active,
        "providedBy": {
            "identifier": element.identifier(defined.unit.identifier),
            "display": defined.unit.name,
        },
        "type": [
            {
                "coding": [
                    {
                        "system": urls.CS_TIME_TYPE,
                        "code": kind.code,
                        "display": kind.names[language],
                    }
                ]
            }
        ],
        "name": kind.names[language],
        "_name": {"extension": translations},
    }


class _Reader:
    """Reads one HealthcareService, gathering every problem with its expression."""

    def __init__(self, resource: Resource, unit_kind: OrganizationKind) -> None:
        self.resource = resource
        self.unit_kind = unit_kind
        self.issues: list[Issue] = []

    def problem(self, at: str, message: str, code: str = "invalid") -> None:
        self.issues.append(issue(f"{at}: {message}", code, at))

    def unit(self) -> Organization | None:
        provided = _obj(self.resource.get("providedBy"))
        named = _obj(provided.get("identifier"))
        system, value = named.get("system"), named.get("value")
        kind = kind_for(system) if isinstance(system, str) else None
        display = provided.get("display")
        at = "HealthcareService.providedBy"
        if kind is None or not isinstance(value, str):
            self.problem(f"{at}.identifier", "must name the care unit by its HSA-id or org.nr")
            return None
        if not isinstance(display, str) or not display.strip():
            self.problem(f"{at}.display", "must give the care unit's name")
            return None
        try:
            return Organization(
                identifier=Identifier(kind=kind, value=value),
                name=display,
                kind=self.unit_kind,
            )
        except ValidationError as exc:
            for found in problems_of(exc):
                self.problem(f"{at}.identifier", found.message)
            return None

    def code(self) -> str | None:
        codes = [
            _obj(c).get("code")
            for t in _items(self.resource.get("type"))
            for c in _items(_obj(t).get("coding"))
            if _obj(c).get("system") == urls.CS_TIME_TYPE
        ]
        if len(codes) != 1 or not isinstance(codes[0], str):
            self.problem("HealthcareService.type", f"must hold one code of {urls.CS_TIME_TYPE}")
            return None
        return codes[0]

    def names(self) -> dict[str, object]:
        language = self.resource.get("language")
        at = "HealthcareService.language"
        if language not in _LANGUAGES:
            self.problem(at, f"must be the language of name: one of {', '.join(_LANGUAGES)}")
        names: dict[str, object] = {str(language): self.resource.get("name")}
        for extension in _items(_obj(self.resource.get("_name")).get("extension")):
            if _obj(extension).get("url") != _TRANSLATION:
                continue
            parts = {_obj(p).get("url"): _obj(p) for p in _items(_obj(extension).get("extension"))}
            lang = _obj(parts.get("lang")).get("valueCode")
            names[str(lang)] = _obj(parts.get("content")).get("valueString")
        missing = [lang for lang in _LANGUAGES if not isinstance(names.get(lang), str)]
        if missing:
            self.problem(
                "HealthcareService.name",
                f"must be named in {', '.join(_LANGUAGES)}: name in its language, the others "
                f"as {_TRANSLATION} extensions; missing: {', '.join(missing)}",
            )
        return {lang: names[lang] for lang in _LANGUAGES if lang in names}

    def rules(self) -> dict[str, Resource]:
        found = [
            _obj(e)
            for e in _items(self.resource.get("extension"))
            if _obj(e).get("url") == urls.EXT_TIME_TYPE_RULES
        ]
        if len(found) != 1:
            self.problem("HealthcareService.extension", f"must hold one {urls.EXT_TIME_TYPE_RULES}")
            return {}
        return {str(_obj(p).get("url")): _obj(p) for p in _items(found[0].get("extension"))}

    def value(
        self, rules: dict[str, Resource], name: str, kind: str, *, needed: bool = True
    ) -> Any:
        at = f"HealthcareService.extension('{urls.EXT_TIME_TYPE_RULES}').extension('{name}')"
        part = rules.get(name)
        if part is None:
            if needed:
                self.problem(at, f"is missing: a value{kind}")
            return None
        value = part.get(f"value{kind}")
        if value is None:
            self.problem(at, f"must hold a value{kind}")
        return value


def defined_time_type(
    resource: Resource, unit_kind: OrganizationKind = OrganizationKind.CARE_UNIT
) -> DefinedTimeType:
    """The time type ``resource`` (a HealthcareService) defines, of a unit of ``unit_kind``
    (its Organization record says); `UnreadableTimeTypeError` naming every problem, each at its
    expression, when it defines none."""
    reader = _Reader(resource, unit_kind)
    if resource.get("resourceType") != "HealthcareService":
        reader.problem("resourceType", "must be HealthcareService")
        raise UnreadableTimeTypeError("not a time type", reader.issues)
    unit = reader.unit()
    code = reader.code()
    names = reader.names()
    rules = reader.rules()
    minutes = _obj(reader.value(rules, "minutes", "Duration")).get("value")
    cutoff = _obj(reader.value(rules, "cancelCutoff", "Duration")).get("value")
    appointment = _obj(reader.value(rules, "appointmentType", "Coding"))
    zone = reader.value(rules, "timeZone", "Code")
    data = {
        "code": code,
        "names": names,
        "minutes": minutes,
        "patient": {
            "book": reader.value(rules, "patientBook", "Boolean"),
            "cancel": reader.value(rules, "patientCancel", "Boolean"),
            "rebook": reader.value(rules, "patientRebook", "Boolean"),
        },
        "cancel_cutoff_hours": cutoff,
        "appointment_type": appointment.get("code"),
        "care_guarantee_step": reader.value(rules, "careGuaranteeStep", "Code", needed=False),
        "active": resource.get("active", True),
    }
    # Every problem at once: what the structure already refused is not said again by the model.
    said = {e for i in reader.issues for e in i.get("expression", [])}
    kind = None
    try:
        kind = TimeType.model_validate(data)
    except ValidationError as exc:
        for found in problems_of(exc):
            at = _expression(found.path)
            if at not in said:
                said.add(at)
                reader.problem(at, found.message)
    if isinstance(zone, str) and not known_zone(zone):
        reader.problem(
            f"HealthcareService.extension('{urls.EXT_TIME_TYPE_RULES}').extension('timeZone')",
            f"unknown time zone {zone!r}: an IANA name such as Europe/Stockholm",
        )
    if unit is not None and kind is not None:
        reader.issues += step_problems(unit, kind, _EXPRESSIONS["$.care_guarantee_step"])
    if reader.issues or unit is None or kind is None or not isinstance(zone, str):
        raise UnreadableTimeTypeError(
            "; ".join(i["diagnostics"] for i in reader.issues), reader.issues
        )
    return DefinedTimeType(unit, zone, kind)


_RULES = f"HealthcareService.extension('{urls.EXT_TIME_TYPE_RULES}')"
_EXPRESSIONS = {
    "$.code": "HealthcareService.type.coding.code",
    "$.names": "HealthcareService.name",
    "$.minutes": f"{_RULES}.extension('minutes')",
    "$.cancel_cutoff_hours": f"{_RULES}.extension('cancelCutoff')",
    "$.appointment_type": f"{_RULES}.extension('appointmentType')",
    "$.care_guarantee_step": f"{_RULES}.extension('careGuaranteeStep')",
    "$.active": "HealthcareService.active",
    "$.patient": f"{_RULES}.extension('patientBook')",
}


def _expression(path: str) -> str:
    """The FHIRPath expression of the element a time type's JSON ``path`` is read from."""
    first = path.removeprefix("$.").split(".")[0].split("[")[0]
    return _EXPRESSIONS.get(f"$.{first}", "HealthcareService")


def step_problems(unit: Organization, kind: TimeType, at: str) -> list[Issue]:
    """A care-guarantee step the unit's country's rules do not have, said at ``at``."""
    if kind.care_guarantee_step is None:
        return []
    jurisdiction = "NO" if unit.identifier.kind is IdentifierKind.ORGANISASJONSNUMMER else "SE"
    steps = care_guarantee_steps().get(jurisdiction, {})
    if kind.care_guarantee_step in steps:
        return []
    known = ", ".join(sorted(steps))
    message = f"unknown care-guarantee step {kind.care_guarantee_step!r} in {jurisdiction}"
    return [issue(f"{message}; use one of {known}", "code-invalid", at)]


def named_time_types(contract: Contract) -> list[tuple[Identifier, str]]:
    """The units and time types ``contract``'s agreed times name."""
    return [
        (t.organization.identifier, t.time_type)
        for t in contract.agreed_times
        if t.time_type is not None
    ]


def unknown_time_types(contract: Contract, types: TimeTypes) -> list[tuple[str, str]]:
    """``(json path, message)`` for each agreed time of ``contract`` whose time type its care
    unit has not defined (retired ones still name the times booked under them)."""
    return [
        (
            f"$.agreed_times[{i}].time_type",
            f"{t.organization.name} has no time type {t.time_type!r}",
        )
        for i, t in enumerate(contract.agreed_times)
        if t.time_type is not None and t.time_type not in types.known(t.organization.identifier)
    ]


def _obj(value: object) -> dict[str, Any]:
    return cast(dict[str, Any], value) if isinstance(value, dict) else {}


def _items(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def unit_kind_of(organization: Resource) -> OrganizationKind:
    """The kind of unit an Organization record is (a care unit when it does not say)."""
    table = code_table("organization-kind")
    for concept in _items(organization.get("type")):
        for coding in _items(_obj(concept).get("coding")):
            code = _obj(coding).get("code")
            if _obj(coding).get("system") == table.system and code in set(OrganizationKind):
                return OrganizationKind(code)
    return OrganizationKind.CARE_UNIT
