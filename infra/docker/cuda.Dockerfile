# syntax=docker/dockerfile:1
# seqae GPU worker: onnxruntime-gpu inference (seqae embed, the embed flow's shard tasks, a Ray GPU
# worker). No TensorFlow: train and export on the CPU image, hand the model directory over.
# Build from the repository root:
#   docker build -f infra/docker/cuda.Dockerfile -t seqae-cuda:0.1.0 .
#
# onnxruntime-gpu 1.31 is built for CUDA 13 and loads, from the image: the CUDA 13 runtime
# (libcudart.so.13), cuBLAS and cuBLASLt 13, cuFFT 12, cuRAND 10, NVRTC 13 and cuDNN 9 for CUDA 13
# (its wheel's `cuda` and `cudnn` extras name the same set). NVIDIA's cudnn-runtime image carries all
# of them; the host needs an NVIDIA driver of the 580 series or newer (CUDA 13) and the NVIDIA
# container toolkit (docker run --gpus all) or, on Kubernetes, the NVIDIA device plugin.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

# The extras this image installs (no `train`: no TensorFlow); tests/infra checks the set resolves
# with constraints.txt and holds onnxruntime-gpu but not tensorflow.
ARG SEQAE_EXTRAS=flows,ray

ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false \
    SEQAE_PROJECT_DIR=/opt/seqae PYTHONPATH=/opt/seqae PATH=/opt/venv/bin:$PATH

# Python 3.11, the version constraints.txt was resolved and tested on (Ubuntu 22.04 ships it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv \
 && useradd --create-home --uid 1000 seqae && mkdir -p /data && chown seqae /data
WORKDIR /opt/seqae

COPY pyproject.toml constraints.txt README.md ./
COPY seqae/ seqae/
RUN pip install -c constraints.txt ".[${SEQAE_EXTRAS}]" \
 && python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers()" \
 && ! python -c "import tensorflow" 2>/dev/null
COPY flows/ flows/
COPY prefect.yaml ./

USER seqae
VOLUME ["/data"]
# `seqae embed --device cuda` fails at once when the CUDA provider cannot run here (no GPU, no driver).
CMD ["prefect", "worker", "start", "--pool", "seqae-process", "--type", "process"]
