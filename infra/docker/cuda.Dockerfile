# syntax=docker/dockerfile:1
# seqae GPU image: onnxruntime-gpu inference only (seqae embed, the embed flow's shard tasks, a Ray GPU
# worker, the GPU pool's worker). No TensorFlow: a retrain cannot run here; train and export on the
# CPU image (its pool, seqae-process) and hand the model directory over.
# Build from the repository root, with both base image digests (infra/README.md, "Pinning"):
#   docker build -f infra/docker/cuda.Dockerfile --build-arg PYTHON_DIGEST=sha256:... \
#     --build-arg CUDA_DIGEST=sha256:... -t seqae-cuda:0.1.0 .
#
# onnxruntime-gpu 1.31 is built for CUDA 13 and loads, from the image: the CUDA 13 runtime
# (libcudart.so.13), cuBLAS and cuBLASLt 13, cuFFT 12, cuRAND 10, NVRTC 13 and cuDNN 9 for CUDA 13
# (its wheel's `cuda` and `cudnn` extras name the same set). NVIDIA's cudnn-runtime image carries all
# of them; the host needs an NVIDIA driver of the 580 series or newer (CUDA 13) and the NVIDIA
# container toolkit (docker run --gpus all) or, on Kubernetes, the NVIDIA device plugin.

# The same CPython as cpu.Dockerfile (same version and digest: Ray refuses a worker whose Python differs
# from the head's), copied from the official image rather than taken from Ubuntu's packages. Ubuntu
# 24.04 (glibc 2.39) runs a CPython built on Debian 12 (glibc 2.36); Ubuntu 22.04 (2.35) would not.
# No digest has a default: without one the reference ends in "@" and the build stops at once.
ARG PYTHON_VERSION=3.11.14
ARG PYTHON_DIGEST
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG CUDA_DIGEST
FROM python:${PYTHON_VERSION}-slim-bookworm@${PYTHON_DIGEST} AS python

FROM ${CUDA_IMAGE}@${CUDA_DIGEST}

# The extras this image installs (no `train`: no TensorFlow); tests/infra checks the set resolves
# with constraints.txt and holds onnxruntime-gpu but not tensorflow.
ARG SEQAE_EXTRAS=flows,ray
ARG PYTHON_VERSION

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false \
    SEQAE_PROJECT_DIR=/opt/seqae PYTHONPATH=/opt/seqae

# The shared libraries the official image's CPython links against, under Ubuntu 24.04's package names.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates netbase tzdata libbz2-1.0 libexpat1 libffi8 \
      libgdbm6t64 libgdbm-compat4t64 liblzma5 libncursesw6 libnsl2 libreadline8t64 libsqlite3-0 libssl3t64 \
      libtinfo6 libtirpc3t64 libuuid1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=python /usr/local/bin/ /usr/local/bin/
COPY --from=python /usr/local/lib/ /usr/local/lib/
# Every interpreter binary and extension module finds its libraries, and the interpreter is the pinned
# one. Ubuntu 24.04 images ship a user `ubuntu` with uid 1000, the uid seqae has in both images.
RUN ldconfig \
 && ! { ldd /usr/local/bin/python3 /usr/local/lib/libpython3*.so.* \
          /usr/local/lib/python3.*/lib-dynload/*.so | grep "not found"; } \
 && python3 -c "import sys, platform, ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, readline; \
assert platform.python_version() == '${PYTHON_VERSION}', (platform.python_version(), '${PYTHON_VERSION}')" \
 && { ! id -u ubuntu >/dev/null 2>&1 || userdel --remove ubuntu; } \
 && useradd --create-home --uid 1000 seqae && mkdir -p /data && chown seqae /data
WORKDIR /opt/seqae

COPY pyproject.toml constraints.txt README.md ./
COPY seqae/ seqae/
COPY infra/docker/cuda_check.py /usr/local/lib/seqae/cuda_check.py
# The CUDA libraries onnxruntime-gpu needs load (no GPU needed: a build machine has none); whether a
# GPU is usable is a run-time check: `python3 /usr/local/lib/seqae/cuda_check.py --gpu`.
RUN pip install -c constraints.txt ".[${SEQAE_EXTRAS}]" \
 && python3 /usr/local/lib/seqae/cuda_check.py \
 && ! python3 -c "import tensorflow" 2>/dev/null
COPY flows/ flows/
COPY prefect.yaml ./

USER seqae
VOLUME ["/data"]
# The GPU pool's worker: embed deployments only (infra/README.md, "Pools"); retrains stay on the CPU
# pool, whose image has TensorFlow. Its health endpoint is on :8080/health.
CMD ["prefect", "worker", "start", "--pool", "seqae-gpu", "--type", "process", "--with-healthcheck"]
