# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target serving  -t kiln-serving .   # ONNX Runtime + BentoML, no TensorFlow
#   docker build --target training -t kiln-training .  # TensorFlow, tfmot, tf2onnx, Prefect
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BENTOML_HOME=/tmp/bentoml
WORKDIR /app
RUN groupadd --system --gid 10001 kiln \
    && useradd --system --uid 10001 --gid kiln --home-dir /app --shell /usr/sbin/nologin kiln
COPY pyproject.toml README.md ./
COPY serving/ serving/
COPY flows/ flows/
COPY training/ training/
COPY compression/ compression/

FROM base AS serving
# Base dependencies only: `kiln serve` imports no TensorFlow (tests/flows/test_cli.py checks it).
RUN pip install --no-cache-dir .
ENV KILN_STORE=/models \
    KILN_HOST=0.0.0.0 \
    KILN_PORT=3000
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/livez', timeout=4).status != 200)"]
ENTRYPOINT ["kiln"]
CMD ["serve"]

FROM base AS training
# The local project with its extra; every version is pinned in pyproject.toml, which hadolint cannot see.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[train]"
ENV KILN_STORE=/models \
    PREFECT_HOME=/tmp/prefect
USER 10001:10001
ENTRYPOINT ["kiln"]
CMD ["--help"]
