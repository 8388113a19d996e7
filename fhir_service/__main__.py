"""Allow ``python -m fhir_service``."""

from fhir_service.cli import main

raise SystemExit(main())
