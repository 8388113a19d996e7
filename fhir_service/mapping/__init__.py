"""Contract <-> FHIR R4 resources and transaction Bundles: pure functions."""
