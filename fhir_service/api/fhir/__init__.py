"""The FHIR endpoint: FHIR-capable EHRs and auditors read the contracts' records as FHIR R4."""
