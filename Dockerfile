# syntax=docker/dockerfile:1.7
#
# Atelier's two images, one stage each:
#   docker build --target worker -t atelier-worker .   GPU worker: CUDA torch (`atelier worker`)
#   docker build --target bot    -t atelier-bot .      chat front-ends and migrations: CPU torch
#                                                       (`atelier discord`, `atelier slack`, `atelier migrate`)
# Both run the `atelier` console script as a non-root user; the command is the subcommand, e.g. `worker`.
#
# Why python:3.11-slim rather than an nvidia/cuda base: PyPI's torch==2.14.1 wheel (cu130) carries its own CUDA
# user-space libraries (nvidia-* wheels), so a CUDA base image would only add a second, unused copy of them, and
# its Ubuntu ships no Python 3.11. The GPU driver itself comes from the host through the NVIDIA Container
# Toolkit at run time (compose: deploy.resources.reservations.devices). The cu130 wheels need an NVIDIA driver of
# the R580 series or newer; for an older driver build with a CUDA 12 index, if it publishes these versions:
#   docker build --target worker --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base

# Relative defaults (data/, sqlite://data/atelier.db, data/blobs, data/models) resolve under the working
# directory; compose mounts a volume on data/. Hugging Face downloads go there too, so they survive restarts.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HOME=/srv/atelier/data/huggingface

# A fixed uid/gid, so a bind-mounted data folder can be chowned to it on the host.
RUN groupadd --system --gid 10001 atelier \
    && useradd --system --uid 10001 --gid atelier --home-dir /srv/atelier --shell /usr/sbin/nologin atelier \
    && mkdir -p /srv/atelier/data \
    && chown -R atelier:atelier /srv/atelier

WORKDIR /srv/atelier

# /healthz is served by long-running processes when ATELIER_METRICS_PORT is set (compose sets it); with the port
# unset or 0 nothing serves it and there is nothing to check (one-shot commands such as `migrate`, `imagine`).
# urlopen raises on a refused connection and on 503, which makes the check fail.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; port = os.environ.get('ATELIER_METRICS_PORT') or '0'; port == '0' or urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"

ENTRYPOINT ["atelier"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------------------
FROM base AS worker

# PyPI's wheels are built for CUDA 13; see the header for older drivers.
ARG TORCH_INDEX_URL=https://pypi.org/simple

# Only compute and utility (nvidia-smi) driver libraries are needed; which GPUs are visible is decided by the
# device reservation, not by the image.
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility

# torch first, pinned, in its own layer: the largest download, and it changes far less often than Atelier.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1

# The project itself, from a read-only view of the build context (nothing of the source stays in the image).
# pip keeps the torch installed above, since it satisfies the project's `torch>=…` requirement.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=.,target=/src,rw \
    pip install /src

USER atelier

# ---------------------------------------------------------------------------------------------------------------
FROM base AS bot

# The bots validate commands against engine.registry and never run a model, but the project depends on torch
# (and the composition root imports the engine's modules), so the bot image gets the CPU-only build of the same
# torch version from PyTorch's CPU index: the whole project imports, without the GBs of CUDA libraries.
ARG TORCH_CPU_INDEX_URL=https://download.pytorch.org/whl/cpu

RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_CPU_INDEX_URL}" torch==2.14.1 torchvision==0.29.1

RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=.,target=/src,rw \
    pip install /src

USER atelier
