"""An agreed contract of a patient of its own, agreed by both parties in their own name, with
each party's headers: what the JSON facade's tests of a party's acts (progress, proposals) start
from."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from tests.auth import TestIssuer
from tests.support import unique_personnummer

EXAMPLES = Path(__file__).parents[3] / "profiles" / "examples" / "contracts"
UNIT = "hsa-id|SE2321000065-1254"


class Story:
    """An agreed contract of a patient of their own, and each party's headers."""

    def __init__(self, client: TestClient, issuer: TestIssuer) -> None:
        self.client = client
        personnummer = unique_personnummer()
        self.patient_claim = f"personnummer|{personnummer}"
        self.patient_subject = f"patient-{uuid.uuid4().hex[:8]}"
        self.ehr = issuer.headers("ehr", organization=UNIT)
        self.clinician = issuer.headers("clinician", organization=UNIT, subject="dr-progress")
        self.patient = issuer.headers(
            "patient", patient=f"personnummer|{personnummer}", subject=self.patient_subject
        )
        data: dict[str, Any] = json.loads((EXAMPLES / "elderly-psychiatry.json").read_text("utf-8"))
        data["id"] = f"progress-{uuid.uuid4().hex[:12]}"
        data["patient"]["identifier"]["value"] = personnummer
        # The relative taking part is named by their own personnummer, as a leave names them.
        self.relative = unique_personnummer()
        data["relatives"][0]["identifier"] = {"kind": "personnummer", "value": self.relative}
        self.id = data["id"]
        self.data = data
        created = self.client.post("/contracts", json=data, headers=self.ehr).json()
        proposed = self.post("propose", self.ehr, created["version"]).json()
        self.post("sign", self.patient, proposed["version"], {"decision": "agree"})
        agreed = self.post("sign", self.clinician, proposed["version"], {"decision": "agree"})
        assert agreed.json()["status"] == "agreed", agreed.text
        self.agreed = agreed.json()

    def post(
        self, action: str, who: dict[str, str], version: int | None, body: Any = None
    ) -> httpx.Response:
        headers = dict(who) if version is None else {**who, "If-Match": f'W/"{version}"'}
        return self.client.post(f"/contracts/{self.id}/{action}", headers=headers, json=body)

    def report(
        self, key: str, who: dict[str, str], version: int | None = None, **body: Any
    ) -> httpx.Response:
        return self.post(f"activities/{key}/progress", who, version, body)

    def read(self) -> dict[str, Any]:
        return dict(self.client.get(f"/contracts/{self.id}", headers=self.ehr).json())
