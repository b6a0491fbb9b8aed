# syntax=docker/dockerfile:1
# One image for the loreg API and worker.
#
#   docker build -t loreg .                                   # CPU (API, CPU workers)
#   docker build -t loreg-worker \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .   # GPU workers
#
# The command decides the role: `loreg serve --no-worker` (API) or `loreg worker`.
# Every setting comes from LOREG_* variables (docs/configuration.md); S3 credentials come
# the usual boto3 way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, or a role).

ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

# Where torch comes from: the CPU wheels by default (small, no CUDA libraries); a CUDA
# index (e.g. .../whl/cu126) for the GPU worker image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOREG_HOME=/var/lib/loreg \
    PATH=/opt/loreg/venv/bin:$PATH

# CUDA bases (Ubuntu) ship without Python: install the distribution's (>= 3.11 on 24.04).
RUN set -eux; \
    if ! command -v python3 >/dev/null 2>&1 \
       || ! python3 -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv /opt/loreg/venv; \
    groupadd --system loreg 2>/dev/null || true; \
    useradd --system --gid loreg --home-dir /var/lib/loreg --shell /usr/sbin/nologin loreg \
        2>/dev/null || true; \
    mkdir -p /var/lib/loreg && chown loreg:loreg /var/lib/loreg

# torch first, from the chosen index, so installing loreg[server] does not pull another build.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch${TORCH_VERSION:+==${TORCH_VERSION}}"

WORKDIR /opt/loreg/src
COPY pyproject.toml README.md ./
COPY loreg ./loreg
# The server profile: API, worker, database, blob store and the merge engine.
RUN pip install ".[server]" && rm -rf /opt/loreg/src/build

USER loreg
WORKDIR /var/lib/loreg
EXPOSE 8080

# No HEALTHCHECK here: the same image runs workers, which serve no HTTP. The API's check
# (GET /readyz) is in docker-compose.yml.
CMD ["loreg", "serve", "--host", "0.0.0.0", "--port", "8080"]
