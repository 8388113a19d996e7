"""Patient contracts (patientkontrakt, individuell plan) on FHIR R4, kept in sync with HAPI FHIR."""

__all__ = ["__version__"]

__version__ = "0.1.0"
