# The two commands a newcomer needs:
#   make run    set everything up and run the service with the local HAPI FHIR server
#   make test   set everything up and run the whole test suite against a real HAPI FHIR server
# Needs Python 3.11+, Java 17+ and Maven 3.8+; everything else is installed here.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup hapi axe lint format lock bench bench-booking bench-load clean

# The local development issuer lets `fhir-service token --role ...` mint tokens to try the API.
run: setup hapi
	FHIR_SERVICE_AUTH_LOCAL_ISSUER=$${FHIR_SERVICE_AUTH_LOCAL_ISSUER:-true} \
	FHIR_SERVICE_TIME_TYPES_SEED=$${FHIR_SERVICE_TIME_TYPES_SEED-mappings/booking/time-types.json} \
	$(BIN)/fhir-service serve

test: setup hapi axe
	$(BIN)/pytest

setup: $(STAMP)

$(STAMP): requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

hapi: setup
	$(BIN)/fhir-service hapi build

# axe-core, pinned by its lockfile, which the patient page's browser tests inject (needs npm).
AXE := tests/axe/node_modules/axe-core/axe.min.js
axe: $(AXE)

$(AXE): tests/axe/package.json tests/axe/package-lock.json
	npm ci --prefix tests/axe --no-audit --no-fund --silent
	@touch $@

lint: setup
	$(BIN)/ruff check fhir_service tests bench
	$(BIN)/ruff format --check fhir_service tests bench
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix fhir_service tests bench
	$(BIN)/ruff format fhir_service tests bench

# Re-pin the dependencies after changing pyproject.toml (uv is used only to resolve).
lock: setup
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements-dev.lock

clean:
	rm -rf $(VENV) hapi/target tests/axe/node_modules .pytest_cache .mypy_cache .ruff_cache

bench: setup hapi
	$(BIN)/python -m bench.readiness
	$(BIN)/python -m bench.mapping
	$(BIN)/python -m bench.bulk
	$(BIN)/python -m bench.facade

# 20 clients booking and cancelling, service vs HAPI; exits 1 on a double booking.
bench-booking: setup hapi
	$(BIN)/python -m bench.booking

# 20 clients of a mix of reads, searches, creates and bookings, service vs HAPI, with webhooks;
# exits 1 when a request went wrong.
bench-load: setup hapi
	$(BIN)/python -m bench.load
