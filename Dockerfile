# syntax=docker/dockerfile:1
# Three images from one file:
#   docker build --target serving-cpu -t kiln-serving-cpu .  # ONNX Runtime (CPU build) + BentoML, no TensorFlow
#   docker build --target serving-gpu -t kiln-serving-gpu .  # the same on CUDA 13 with onnxruntime-gpu
#   docker build --target training    -t kiln-training .     # TensorFlow, tfmot, tf2onnx, Prefect (+ k8s worker)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

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

FROM base AS serving-cpu
# Base dependencies only: `kiln serve` imports no TensorFlow (tests/flows/test_cli.py checks it), and the
# CPU build of ONNX Runtime brings no CUDA libraries.
RUN pip install --no-cache-dir .
ENV KILN_STORE=/models \
    KILN_HOST=0.0.0.0 \
    KILN_PORT=3000 \
    KILN_DEVICE=cpu
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/livez', timeout=4).status != 200)"]
ENTRYPOINT ["kiln"]
CMD ["serve"]

# Build the GPU serving environment with the project's Python, then carry it onto the CUDA runtime image.
FROM base AS serving-gpu-build
RUN python -m venv /opt/kiln \
    && /opt/kiln/bin/pip install --no-cache-dir ".[gpu]" \
    && /opt/kiln/bin/pip uninstall -y onnxruntime \
    && /opt/kiln/bin/pip install --no-cache-dir --force-reinstall --no-deps "onnxruntime-gpu>=1.31,<1.32"

FROM ${CUDA_IMAGE} AS serving-gpu
# Python 3.11 from the python image (built for an older glibc, so it runs here) and the libraries it links.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libsqlite3-0 libffi8 libssl3 zlib1g libbz2-1.0 liblzma5 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kiln \
    && useradd --system --uid 10001 --gid kiln --home-dir /app --shell /usr/sbin/nologin kiln
COPY --from=serving-gpu-build /usr/local /usr/local
COPY --from=serving-gpu-build /opt/kiln /opt/kiln
COPY --from=serving-gpu-build /app /app
WORKDIR /app
ENV PATH=/opt/kiln/bin:$PATH \
    LD_LIBRARY_PATH=/usr/local/lib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BENTOML_HOME=/tmp/bentoml \
    KILN_STORE=/models \
    KILN_HOST=0.0.0.0 \
    KILN_PORT=3000 \
    KILN_DEVICE=cuda
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3000/livez', timeout=4).status != 200)"]
ENTRYPOINT ["kiln"]
CMD ["serve"]

FROM base AS training
# The local project with its extras; every version is pinned in pyproject.toml, which hadolint cannot see.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[train,k8s]"
ENV KILN_STORE=/models \
    PREFECT_HOME=/tmp/prefect
USER 10001:10001
ENTRYPOINT ["kiln"]
CMD ["--help"]
