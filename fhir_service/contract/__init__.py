"""The patient contract as a domain model: pure Python, knows nothing of FHIR or HTTP."""
