# The patient-contract service. HAPI FHIR runs in its own container (see docker-compose.yml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
COPY fhir_service ./fhir_service
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
 && pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app fhir-service && mkdir -p /data \
 && chown fhir-service /data
COPY --from=build /usr/local/lib/python3.11/site-packages /usr/local/lib/python3.11/site-packages
COPY --from=build /usr/local/bin/fhir-service /usr/local/bin/fhir-service
USER fhir-service
WORKDIR /app
ENV FHIR_SERVICE_ENVIRONMENT=production \
    FHIR_SERVICE_HOST=0.0.0.0 \
    FHIR_SERVICE_PORT=8000 \
    FHIR_SERVICE_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["fhir-service", "serve"]
