"""The FHIR records as one request's caller may see and change them (`CallerRecords`), the
guard every resource given back passes, and the refusals they answer with."""
