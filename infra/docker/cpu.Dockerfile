# syntax=docker/dockerfile:1
# seqae CPU image: training (TensorFlow), ONNX export, CPU inference, the Prefect server and the CPU
# pool's worker (every deployment, retrains included), the Ray head. Build from the repository root
# (the context must hold pyproject.toml), with the base image digest (infra/README.md, "Pinning"):
#   docker build -f infra/docker/cpu.Dockerfile --build-arg PYTHON_DIGEST=sha256:... -t seqae-cpu:0.1.0 .

# One CPython for every image of the cluster: Ray refuses a node whose Python differs from the head's,
# so cuda.Dockerfile copies its interpreter from this same image (same version, same digest;
# tests/infra keeps the two Dockerfiles in step). PYTHON_DIGEST has no default on purpose: without it
# the reference ends in "@" and the build stops with "invalid reference format".
ARG PYTHON_VERSION=3.11.14
ARG PYTHON_DIGEST
FROM python:${PYTHON_VERSION}-slim-bookworm@${PYTHON_DIGEST}

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
# The CPU pool's worker (prefect.yaml deploys there), with its health endpoint on :8080/health;
# compose and Kubernetes override the command (server, ray start, ...).
CMD ["prefect", "worker", "start", "--pool", "seqae-process", "--type", "process", "--with-healthcheck"]
