"""ASGI middleware every request passes, outermost first as the app adds them: request id,
access log and metrics (`observability`), the body limit (`body_limit`), the security layer with
its audit record (`security`), and OperationOutcomes for errors under ``/fhir``
(`operation_outcomes`)."""
