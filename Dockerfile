# cdc-offload: the binlog sidecar that offloads Moodle/IOMAD credential emails to AWS.
#
#   docker build -t cdc-offload .
#   docker run --rm -p 9108:9108 -e CDC_OFFLOAD_SOURCE_DSN=... cdc-offload          # = cdc-offload run
#   docker run --rm -e CDC_OFFLOAD_WRITER_DSN=... cdc-offload init                   # state schema + GRANTs
#
# Stage 1 builds the wheel and installs it with its dependencies into a virtual environment;
# stage 2 copies only that environment onto a fresh slim image: no compiler, no pip cache, no sources.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/cdc-offload
ENV PATH=/opt/cdc-offload/bin:$PATH
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY cdc_offload/ ./cdc_offload/
RUN pip install --no-cache-dir . \
    && cdc-offload --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cdc-offload" \
      org.opencontainers.image.description="Offloads Moodle/IOMAD credential emails from the MySQL/MariaDB binlog to AWS SQS/SES" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/cdc-offload/bin:$PATH \
    CDC_OFFLOAD_METRICS_PORT=9108
COPY --from=build /opt/cdc-offload /opt/cdc-offload
# A numeric uid/gid, so Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 10001:10001
EXPOSE 9108
# No curl in slim images: the standard library asks /healthz (200 while the loop makes progress).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CDC_OFFLOAD_METRICS_PORT', '9108'), timeout=4)"]
# Exec form: cdc-offload runs as PID 1 (no shell in between), so SIGTERM reaches its own handler and it
# drains (about 15 s; keep the orchestrator's grace period above that).
ENTRYPOINT ["cdc-offload"]
CMD ["run"]
