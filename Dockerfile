# syntax=docker/dockerfile:1
#
# One image for the clientswarm service and its workers.
#
#   docker build -t clientswarm:latest .
#   docker run --rm -p 8080:8080 -e CLIENTSWARM_API_TOKEN=… -v clientswarm-data:/data clientswarm:latest
#
# The default command serves on 0.0.0.0:8080 with its data in /data, which needs an API token
# (CLIENTSWARM_API_TOKEN, or --token-file). Kubernetes worker pods run
# `python -m clientswarm.worker …` in this same image: the venv's python is first on PATH.

# --- builder: a venv with clientswarm and its pinned dependencies -----------------------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# README.md is the project's readme in pyproject.toml, so the build needs it.
COPY pyproject.toml constraints.txt README.md ./
COPY src/ src/
# The extras a service in a Kubernetes cluster uses: `kubernetes` (lightkube) to start the
# worker Jobs, `postgres` (psycopg) for a shared --store. The worker pods need neither.
RUN pip install --no-cache-dir -c constraints.txt '.[kubernetes,postgres]'

# --- final: the venv only, run as an unprivileged user ----------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="clientswarm" \
      org.opencontainers.image.description="Load-test AI inference services from many clients at once: local processes, Slurm jobs or Kubernetes Jobs." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# A fixed numeric UID/GID so that Kubernetes' runAsNonRoot can check it; /data is its home
# and the service's data directory (store, worker logs).
RUN groupadd --system --gid 10001 clientswarm \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin clientswarm \
    && mkdir -p /data \
    && chown 10001:10001 /data

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /data
EXPOSE 8080

ENTRYPOINT ["clientswarm"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data"]
