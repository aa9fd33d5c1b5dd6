# syntax=docker/dockerfile:1
# seqae CPU worker: training (TensorFlow), ONNX export, CPU inference, the Prefect worker and a Ray
# worker or head. Build from the repository root (the context must hold pyproject.toml):
#   docker build -f infra/docker/cpu.Dockerfile -t seqae-cpu:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# The extras this image installs; tests/infra checks that this set resolves with constraints.txt.
ARG SEQAE_EXTRAS=train,flows,ray

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 PREFECT_SERVER_ANALYTICS_ENABLED=false \
    SEQAE_PROJECT_DIR=/opt/seqae PYTHONPATH=/opt/seqae

RUN useradd --create-home --uid 1000 seqae && mkdir -p /data && chown seqae /data
WORKDIR /opt/seqae

# The pinned, tested set (constraints.txt) and the library; flows/ is wiring imported from PYTHONPATH.
COPY pyproject.toml constraints.txt README.md ./
COPY seqae/ seqae/
RUN pip install -c constraints.txt ".[${SEQAE_EXTRAS}]" \
 && python -c "import seqae.infer, seqae.train, prefect, prefect_ray"
COPY flows/ flows/
COPY prefect.yaml ./

USER seqae
VOLUME ["/data"]
# A process worker by default; compose and Kubernetes override the command (server, ray start, ...).
CMD ["prefect", "worker", "start", "--pool", "seqae-process", "--type", "process"]
