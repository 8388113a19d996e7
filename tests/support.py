"""Helpers shared by tests and benchmarks: free ports and test data files."""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import subprocess
import uuid
import zipfile
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import httpx

from fhir_service.api.fhir.types import CONTRACT_TYPES
from fhir_service.contract import IdentifierKind
from fhir_service.contract.identifiers import is_valid
from fhir_service.mapping import urls
from fhir_service.mapping.from_fhir import READ_PARAMS

if TYPE_CHECKING:
    # Only named in signatures: the benchmarks import this module and start no TestClient.
    from fastapi.testclient import TestClient

__all__ = [
    "DATA_DIR",
    "HAPI_START_TIMEOUT",
    "careplan_response",
    "contract_written",
    "free_port",
    "load_data",
    "unique_fodselsnummer",
    "unique_hsa_id",
    "unique_personnummer",
]

DATA_DIR = Path(__file__).parent / "data"
HAPI_START_TIMEOUT = 300.0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def careplan_response(answer: httpx.Response) -> dict[str, Any]:
    """The entry response a transaction answered for the contract's CarePlan."""
    responses = [e["response"] for e in answer.json()["entry"]]
    return next(r for r in responses if str(r.get("location", "")).startswith("CarePlan/"))


def contract_written(service: TestClient, headers: dict[str, str], answer: httpx.Response) -> str:
    """The id of the contract a transaction wrote: the one its answer's CarePlan names, as a
    client learns it."""
    location = careplan_response(answer)["location"].split("/_history/")[0]
    careplan = service.get(f"/fhir/{location}", headers=headers).json()
    return str(next(i["value"] for i in careplan["identifier"] if i["system"] == urls.ID_CONTRACT))


def load_data(name: str, **values: str) -> Any:
    """A JSON file under tests/data with ``${name}`` placeholders filled in."""
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    return json.loads(Template(text).substitute(values))


def unique_personnummer() -> str:
    """A valid personnummer no other test is likely to use: keeps a test's patient its own."""
    body = f"19{random.randint(30, 99)}{random.randint(1, 12):02d}{random.randint(1, 28):02d}"
    body += f"{random.randint(0, 999):03d}"
    return next(
        body + str(digit)
        for digit in range(10)
        if is_valid(IdentifierKind.PERSONNUMMER, body + str(digit))
    )


def unique_fodselsnummer() -> str:
    """A valid Norwegian fødselsnummer no other test is likely to use."""
    while True:
        body = f"{random.randint(1, 28):02d}{random.randint(1, 12):02d}{random.randint(30, 99)}"
        body += f"{random.randint(0, 499):03d}"
        for check in range(100):
            if is_valid(IdentifierKind.FODSELSNUMMER, f"{body}{check:02d}"):
                return f"{body}{check:02d}"


def unique_hsa_id() -> str:
    """A valid HSA-id of a care unit no other test uses."""
    return f"SE2321000065-T{uuid.uuid4().hex[:12].upper()}"


PYTHON_WORDS = re.compile(
    r"[A-Za-z]Error\b|[A-Za-z]Exception\b|Traceback|NoneType|\bdict\b|\blist\b|"
    r"instance of|Value error|Input should|\bstr\b|\bint\b|<class|object at|\bKey\b|"
    r"model_|__|\bself\b|\(\)"
)
"""What gives an answer away as Python's rather than the caller's: exception and type names,
reprs, pydantic's phrasing. No message to a caller matches it."""


def missing(whole: Any, part: Any, path: str = "") -> list[str]:
    """The places of ``part`` that ``whole`` does not hold with the same value: list items
    may be anywhere in the list, beside others."""
    if isinstance(part, dict):
        if not isinstance(whole, dict):
            return [path]
        return [
            place
            for key, value in part.items()
            for place in (
                [f"{path}.{key}"]
                if key not in whole
                else missing(whole[key], value, f"{path}.{key}")
            )
        ]
    if isinstance(part, list):
        if not isinstance(whole, list):
            return [path]
        return [
            f"{path}[{i}]" for i, item in enumerate(part) if all(missing(w, item) for w in whole)
        ]
    return [] if whole == part else [path]


OUR_NAMESPACE = "http://fhir.patient-contracts.org/"


def record_name(resource: dict[str, Any]) -> str:
    """How a test names a record on either side of a write: its type and first identifier
    that is not one of ours (which the service adds), or its type alone when it has none."""
    for identifier in resource.get("identifier", []):
        if not str(identifier.get("system", "")).startswith(OUR_NAMESPACE):
            system, value = identifier.get("system", ""), identifier.get("value")
            return f"{resource['resourceType']}|{system}|{value}"
    return str(resource["resourceType"])


def named(value: Any, names: dict[str, str]) -> Any:
    """``value`` with each reference replaced by the name of the record it refers to."""
    if isinstance(value, list):
        return [named(v, names) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: named(v, names) for k, v in value.items()}
    reference = value.get("reference")
    if isinstance(reference, str):
        out["reference"] = names.get(reference.split("/_history/")[0], reference)
    return out


def bundle_names(bundle: dict[str, Any]) -> dict[str, str]:
    """The name of each record of ``bundle`` by the ways its entries refer to it."""
    names = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        name = record_name(resource)
        if "fullUrl" in entry:
            names[entry["fullUrl"]] = name
        if "id" in resource:
            names[f"{resource['resourceType']}/{resource['id']}"] = name
    return names


def losses(sent: list[dict[str, Any]], stored: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each record sent, the elements that no stored record of its name holds (server ids
    and meta aside); both sides' references already ``named``. Empty: nothing was lost."""
    lost = {}
    for resource in sent:
        name = record_name(resource)
        shown = {k: v for k, v in resource.items() if k not in ("id", "meta")}
        found = [missing(s, shown) for s in stored if record_name(s) == name]
        fewest = min(found, key=len, default=["(no such record)"])
        if fewest:
            lost[name] = fewest
    return lost


def read_back(
    service: TestClient, headers: dict[str, str], hapi: str, contract_id: str
) -> list[dict[str, Any]]:
    """The contract's records as a client reads them back: those of the contract's own types
    through the FHIR endpoint, the rest (patient, parties, records of other types) as HAPI
    holds them; references named as ``tests.support.named`` names them."""
    params = [("identifier", f"{urls.ID_CONTRACT}|{contract_id}"), *READ_PARAMS]
    found = httpx.get(f"{hapi}/CarePlan", params=params).json()
    stored = [
        e["resource"] for e in found["entry"] if e["resource"]["resourceType"] != "Provenance"
    ]
    names = {f"{r['resourceType']}/{r['id']}": record_name(r) for r in stored}
    records = []
    for resource in stored:
        if resource["resourceType"] in CONTRACT_TYPES:
            read = service.get(
                f"/fhir/{resource['resourceType']}/{resource['id']}", headers=headers
            )
            assert read.status_code == 200, read.text
            resource = read.json()
        records.append(named(resource, names))
    return records


def launcher_class_path(folder: Path, jar: Path, libraries: tuple[str, ...] = ()) -> str:
    """A class path for running the launcher's own classes outside Spring Boot: its classes and
    the libraries in ``jar`` (the runnable launcher) whose file names start with one of
    ``libraries``, or all of them when none are named; extracted into ``folder``."""
    parts = [folder / "classes"]
    with zipfile.ZipFile(jar) as runnable:
        for name in runnable.namelist():
            if name.startswith("BOOT-INF/classes/org/"):
                runnable.extract(name, folder)
            elif name.startswith("BOOT-INF/lib/") and (
                not libraries or Path(name).name.startswith(libraries)
            ):
                parts.append(Path(runnable.extract(name, folder)))
    (folder / "BOOT-INF" / "classes").rename(parts[0])
    if libraries:
        assert len(parts) == 1 + len(libraries), f"missing from the launcher jar: {libraries}"
    return ":".join(str(p) for p in parts)


def run_java_source(class_path: str, source: Path, *args: str) -> list[str]:
    """The lines a single-file Java program printed, run with ``class_path``; fails the test
    when it fails."""
    java = shutil.which("java")
    assert java is not None, "java is not on PATH"
    ran = subprocess.run(
        [java, "-cp", class_path, str(source), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()
