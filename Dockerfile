# The patient-contract service. HAPI FHIR runs in its own container (see docker-compose.yml).
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app fhir-service && mkdir -p /data \
 && chown fhir-service /data
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
# The code tables (mappings/) and profiles (profiles/) are data the package reads beside itself.
COPY fhir_service ./fhir_service
COPY mappings ./mappings
COPY profiles ./profiles
USER fhir-service
ENV PYTHONPATH=/app \
    FHIR_SERVICE_ENVIRONMENT=production \
    FHIR_SERVICE_HOST=0.0.0.0 \
    FHIR_SERVICE_PORT=8000 \
    FHIR_SERVICE_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["python", "-m", "fhir_service", "serve"]
