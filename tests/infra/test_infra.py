"""infra/: what can be checked without a container engine or a cluster. Every YAML and JSON file parses;
both images run one pinned CPython and every base image is pinned by digest; the CUDA image's build
check loads the CUDA libraries onnxruntime-gpu needs and its default command is the GPU pool; the
compose file has the Prefect server on PostgreSQL (password from a secret file, never in a URL), health
checks and no secret; every Service, namespace and secret the Kubernetes files name is created there or
documented; the Kubernetes pods share nothing but object storage (no claim but PostgreSQL's, no volume in
the work pool's job or the Ray pods); the work-pool template passes Prefect's own validation and renders
through the kubernetes worker's job configuration with its GPU requests and the Ray token; the Ray
cluster asks for GPUs from the CUDA image, runs with token authentication from the Secret the work pool
reads, and keeps its dashboard on loopback; each image's Python dependency set resolves with
constraints.txt to the pinned versions."""

import asyncio
import ctypes
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
DOCKER = INFRA / "docker"
DIGEST = "sha256:" + "0123456789abcdef" * 4  # a well-formed digest to substitute, never used to pull
# name[:tag]@sha256:<64 hex>, the shape `docker build` accepts for a pinned FROM
PINNED = re.compile(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*(?::[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$")


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.MULTILINE))


def dockerfile_required_args(path: Path) -> set[str]:
    """ARGs declared before the first FROM without a default: the build cannot resolve FROM without them."""
    preamble = path.read_text().split("\nFROM ", 1)[0]
    return set(re.findall(r"^ARG (\w+)$", preamble, re.MULTILINE))


def from_references(path: Path, **build_args: str) -> list[str]:
    """Each FROM's image reference with the build arguments (then the ARG defaults) substituted; an ARG
    with neither is substituted by nothing, as `docker build` does."""
    values = {**dockerfile_args(path), **build_args}
    references = []
    for reference in re.findall(r"^FROM (\S+)", path.read_text(), re.MULTILINE):
        references.append(re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), ""), reference))
    return references


def dockerfile_cmd(path: Path) -> list[str]:
    (cmd,) = re.findall(r"^CMD (\[.*\])$", path.read_text(), re.MULTILINE)
    return json.loads(cmd)


def pool_of(command: list[str]) -> str:
    return command[command.index("--pool") + 1]


def kubernetes_documents() -> list[dict]:
    return [d for path in sorted([*INFRA.glob("k8s/*.yaml"), *INFRA.glob("ray/*.yaml")])
            for d in yaml.safe_load_all(path.read_text()) if d]


def containers(document: dict) -> list[dict]:
    spec = document.get("spec", {})
    if document["kind"] == "RayCluster":
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        return [c for g in groups for c in g["template"]["spec"]["containers"]]
    if document["kind"] in ("Deployment", "StatefulSet"):
        return spec["template"]["spec"]["containers"]
    return []


def load_cuda_check():
    spec = importlib.util.spec_from_file_location("cuda_check", DOCKER / "cuda_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_yaml_and_json_file_parses():
    files = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert {p.relative_to(INFRA).as_posix() for p in files} >= {"compose.yaml", "k8s/gpu-work-pool.json",
                                                              "k8s/prefect-server.yaml", "ray/raycluster.yaml"}
    for path in files:
        documents = [json.loads(path.read_text())] if path.suffix == ".json" else list(
            yaml.safe_load_all(path.read_text()))
        assert documents and all(isinstance(d, dict) for d in documents), path


def test_no_secret_is_written_in_infra():
    for path in INFRA.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            text = path.read_text()
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), path  # an AWS access key id
            # credentials inside a URL (the README writes a built URL's password as "...")
            assert not re.search(r"://[^/\s:@]+:(?!\.\.\.@)[^/\s@]+@", text), path
            for key, value in re.findall(r"^\s*(\w*(?:PASSWORD|SECRET_ACCESS_KEY|SESSION_TOKEN|AUTH_TOKEN)):\s*(\S+)",
                                         text, re.MULTILINE):
                assert value.startswith("${") or value in ("|", ">"), (path, key, value)
            assert not re.search(r"^\s*auth_token:", text, re.MULTILINE), path  # a Secret's data, the Ray token
            # a Secret created from the command line takes a generated value or a placeholder, never a literal
            for key, value in re.findall(r"--from-literal=(\w+)=(\S+)", text):
                assert value.startswith('"$(') or value == "...", (path, key, value)


def test_both_images_run_one_pinned_cpython_from_one_digest():
    """Ray refuses a node whose Python differs from the head's (CPU image) at patch level, so the CUDA
    image copies its interpreter from the very image the CPU image is built on."""
    cpu, cuda = DOCKER / "cpu.Dockerfile", DOCKER / "cuda.Dockerfile"
    version = dockerfile_args(cpu)["PYTHON_VERSION"]
    assert re.fullmatch(r"3\.11\.\d+", version), version  # constraints.txt was resolved on CPython 3.11
    assert dockerfile_args(cuda)["PYTHON_VERSION"] == version
    (cpu_base,) = from_references(cpu, PYTHON_DIGEST=DIGEST)
    python_stage, cuda_base = from_references(cuda, PYTHON_DIGEST=DIGEST, CUDA_DIGEST=DIGEST)
    assert cpu_base == python_stage == f"python:{version}-slim-bookworm@{DIGEST}"
    assert cuda_base.startswith("nvidia/cuda:13.") and "-cudnn-runtime-ubuntu24.04@" in cuda_base
    text = cuda.read_text()
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim-bookworm@\$\{PYTHON_DIGEST\} AS python$", text,
                     re.MULTILINE)
    assert "COPY --from=python /usr/local/bin/ /usr/local/bin/" in text
    assert "COPY --from=python /usr/local/lib/ /usr/local/lib/" in text
    assert "platform.python_version() == '${PYTHON_VERSION}'" in text  # the build refuses another interpreter
    assert "userdel --remove ubuntu" in text  # Ubuntu 24.04's uid 1000, which seqae takes as in the CPU image
    assert "apt-get install" not in text or "python3.1" not in text.split("apt-get install")[1].split("&&")[0]


@pytest.mark.parametrize("image", ["cpu", "cuda"])
def test_every_base_image_is_pinned_by_a_digest_that_must_be_supplied(image):
    """No digest is written in the repository without having been read from a registry: each FROM ends
    in @${..._DIGEST}, an ARG without default, so a build without it stops at "invalid reference"."""
    path = DOCKER / f"{image}.Dockerfile"
    required = dockerfile_required_args(path)
    assert required >= {"PYTHON_DIGEST"}
    for line in re.findall(r"^FROM (\S+)", path.read_text(), re.MULTILINE):
        assert re.search(r"@\$\{(\w+_DIGEST)\}$", line), line
        assert re.search(r"@\$\{(\w+_DIGEST)\}$", line).group(1) in required
    for reference in from_references(path, **dict.fromkeys(required, DIGEST)):
        assert PINNED.match(reference), reference
    for reference in from_references(path):
        assert reference.endswith("@") and not PINNED.match(reference), reference


def test_third_party_images_outside_dockerfiles_are_pinned_by_digest():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    postgres = compose["services"]["postgres"]["image"]
    assert re.fullmatch(r"postgres:16-bookworm@\$\{POSTGRES_DIGEST:\?.+\}", postgres), postgres
    for document in kubernetes_documents():
        for container in containers(document):
            if not container["image"].startswith(("seqae-cpu:", "seqae-cuda:")):
                assert container["image"] == "postgres:16-bookworm@${POSTGRES_DIGEST}", container["image"]


def prefect_yaml_pool() -> str:
    """The one work pool every deployment of prefect.yaml (rendered from flows/deployments.py) uses."""
    (pool,) = {d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    return pool


def test_cuda_image_default_command_is_the_gpu_pool_not_the_cpu_pool():
    """Retrains need TensorFlow, which only the CPU image has: they deploy to the CPU pool (prefect.yaml),
    and the CUDA image's worker polls another pool, for embed deployments."""
    deploy_pool = prefect_yaml_pool()
    cpu_cmd, cuda_cmd = dockerfile_cmd(DOCKER / "cpu.Dockerfile"), dockerfile_cmd(DOCKER / "cuda.Dockerfile")
    assert pool_of(cpu_cmd) == deploy_pool == "seqae-process"
    assert pool_of(cuda_cmd) == "seqae-gpu" != deploy_pool
    assert "--with-healthcheck" in cpu_cmd and "--with-healthcheck" in cuda_cmd
    gpu_worker = yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]["gpu-worker"]
    assert gpu_worker["image"].startswith("${SEQAE_CUDA_IMAGE")
    assert "--pool seqae-gpu " in gpu_worker["command"][-1] and "cuda_check.py --gpu" in gpu_worker["command"][-1]
    readme = (INFRA / "README.md").read_text()
    assert "seqae-gpu" in readme and "seqae-process" in readme and "seqae-k8s-gpu" in readme


def test_cuda_build_check_loads_the_libraries_not_just_lists_the_provider():
    text = (DOCKER / "cuda.Dockerfile").read_text()
    assert "get_available_providers" not in text  # true with no CUDA library at all
    assert "&& python3 /usr/local/lib/seqae/cuda_check.py \\\n" in text  # the build check, without --gpu
    assert "COPY infra/docker/cuda_check.py /usr/local/lib/seqae/cuda_check.py" in text


def test_cuda_check_loads_what_onnxruntime_gpu_preloads():
    import onnxruntime

    cuda_version = getattr(onnxruntime, "cuda_version", "")
    if not cuda_version.startswith("13") or not hasattr(onnxruntime, "_get_nvidia_dll_paths"):
        pytest.skip(f"onnxruntime here is not the CUDA 13 build (cuda_version {cuda_version!r})")
    preloaded = [path[-1] for path in onnxruntime._get_nvidia_dll_paths(is_windows=False)]
    assert sorted(load_cuda_check().CUDA_LIBRARIES) == sorted(preloaded)


def test_cuda_check_fails_and_names_each_library_that_does_not_load():
    check = load_cuda_check()
    missing = []
    for name in check.CUDA_LIBRARIES:
        try:
            ctypes.CDLL(name)
        except OSError:
            missing.append(name)
    result = subprocess.run([sys.executable, str(DOCKER / "cuda_check.py")], capture_output=True, text=True,
                            timeout=120)
    if not missing:
        pytest.skip("every CUDA library loads on this machine")
    assert result.returncode == 1, result.stdout + result.stderr
    for name in missing:
        assert f"cuda_check: {name} does not load: " in result.stderr


def test_cuda_check_probe_model_runs():
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(load_cuda_check().PROBE_MODEL, providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.array([[-1.0, 0.0, 2.0, -3.0]], np.float32)})
    assert y.tolist() == [[0.0, 0.0, 2.0, 0.0]]


def test_compose_runs_the_prefect_server_on_postgresql_with_a_worker_and_a_data_volume():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker", "gpu-worker"} <= set(services)
    server = services["prefect-server"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "data:/data" in worker["volumes"] and "data" in compose["volumes"]
    # the pool the worker polls is the one prefect.yaml deploys to
    pool = prefect_yaml_pool()
    assert pool_of(worker["command"]) == pool


def test_compose_database_password_comes_from_a_secret_file_never_a_url():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    assert compose["secrets"]["postgres_password"] == {"environment": "POSTGRES_PASSWORD"}
    postgres, server = services["postgres"], services["prefect-server"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "postgres_password" in postgres["secrets"] and "postgres_password" in server["secrets"]
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in server["environment"]
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in server["environment"]
    script = server["command"][-1]
    assert "PREFECT_SERVER_DATABASE_PASSWORD=$$(cat /run/secrets/postgres_password)" in script
    assert script.startswith("set -e;") and script.endswith("exec prefect server start --host 0.0.0.0 --port 4200")
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key or key.endswith("_FILE"), (name, key)
            assert "POSTGRES_PASSWORD" not in str(value), (name, key)


def database_url(environment: dict[str, str]) -> str:
    """The connection URL the installed Prefect builds from an environment (in a clean process)."""
    code = ("from prefect.settings import Settings; "
            "print(Settings().server.database.connection_url.get_secret_value())")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **environment}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_prefect_builds_the_database_url_from_the_parts_compose_and_kubernetes_set(tmp_path):
    password = "p@ss:w/rd"  # characters a URL would have to escape
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]["prefect-server"]["environment"]
    server = next(d for d in kubernetes_documents() if d["kind"] == "Deployment" and
                  d["metadata"]["name"] == "prefect-server")
    (container,) = containers(server)
    kubernetes = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    (secret_env,) = [e for e in container["env"] if "valueFrom" in e]
    assert secret_env == {"name": "PREFECT_SERVER_DATABASE_PASSWORD",
                          "valueFrom": {"secretKeyRef": {"name": "seqae-postgres", "key": "password"}}}
    common = {"PREFECT_HOME": str(tmp_path), "PREFECT_SERVER_DATABASE_PASSWORD": password}
    assert database_url({**compose, **common}) == "postgresql+asyncpg://prefect:p%40ss%3Aw%2Frd@postgres:5432/prefect"
    assert database_url({**kubernetes, **common}) == (
        "postgresql+asyncpg://prefect:p%40ss%3Aw%2Frd@postgres.seqae.svc:5432/prefect")


def test_every_long_running_service_has_a_health_check():
    import inspect

    from prefect.cli.worker import start
    from prefect.settings import PREFECT_WORKER_WEBSERVER_HOST, PREFECT_WORKER_WEBSERVER_PORT

    assert "with_healthcheck" in inspect.signature(start).parameters  # `--with-healthcheck` in this Prefect
    assert (PREFECT_WORKER_WEBSERVER_HOST.name, PREFECT_WORKER_WEBSERVER_PORT.name) == (
        "PREFECT_WORKER_WEBSERVER_HOST", "PREFECT_WORKER_WEBSERVER_PORT")
    services = yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        if name != "deploy":  # a one-off command
            assert "healthcheck" in service, name
    for name in ("worker", "gpu-worker"):
        service = services[name]
        command = " ".join(service["command"])
        assert "--with-healthcheck" in command, name
        port = service["environment"]["PREFECT_WORKER_WEBSERVER_PORT"]
        assert f"http://127.0.0.1:{port}/health" in service["healthcheck"]["test"][-1], name
        assert service["environment"]["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
    for document in kubernetes_documents():
        for container in containers(document):
            assert "readinessProbe" in container and "livenessProbe" in container, container["name"]
            assert "wget" not in json.dumps(container)  # not in these images


def test_every_namespace_service_and_secret_referenced_exists_or_is_documented():
    documents = kubernetes_documents()
    defined = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in documents}
    namespaces = {name for kind, _, name in defined if kind == "Namespace"}
    # the Ray head Service KubeRay creates for a cluster (<name>-head-svc)
    ray_services = {f"{d['metadata']['name']}-head-svc" for d in documents if d["kind"] == "RayCluster"}
    defined |= {("Service", d["metadata"]["namespace"], f"{d['metadata']['name']}-head-svc")
                for d in documents if d["kind"] == "RayCluster"}
    readme = (INFRA / "README.md").read_text()
    text = json.dumps(documents)
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"].get("namespace") in namespaces, document["metadata"]
    # Services named by DNS (<service>.<namespace>.svc) in any value, here and in the README
    for service, namespace in set(re.findall(r"\b([a-z0-9-]+)\.([a-z0-9-]+)\.svc\b", text + readme)):
        assert ("Service", namespace, service) in defined, f"{service}.{namespace}.svc"
    assert set(re.findall(r"ray://([a-z0-9-]+?)(?:\.seqae\.svc)?:10001", readme)) == ray_services
    # secrets are never in a file: each one named (the Ray cluster's authOptions.secretName included) is
    # created by a documented command in its namespace
    secrets = {*re.findall(r'"(?:secretRef|secretKeyRef)": \{"name": "([^"]+)"', text),
               *re.findall(r'"secretName": "([^"]+)"', text)}
    template = json.loads((INFRA / "k8s" / "gpu-work-pool.json").read_text())["variables"]["properties"]
    secrets |= {template["storage_secret"]["default"], template["ray_auth_secret"]["default"]}
    assert secrets == {"seqae-object-storage", "seqae-postgres", "seqae-ray-auth"}
    assert "Secret" not in {kind for kind, _, _ in defined}
    for secret in secrets:
        assert re.search(rf"kubectl -n seqae create secret generic {secret}\b", readme), secret
    # the work pool's flow-run pods go where the secrets are
    assert template["namespace"]["default"] in namespaces


def pod_specs(document: dict) -> list[dict]:
    """The pod templates of a Kubernetes document (a RayCluster's head and worker groups included)."""
    spec = document.get("spec", {})
    if document["kind"] == "RayCluster":
        return [g["template"]["spec"] for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]]
    if document["kind"] in ("Deployment", "StatefulSet"):
        return [spec["template"]["spec"]]
    return []


def test_the_kubernetes_pods_share_nothing_but_object_storage():
    """Data, models and outputs are s3:// URIs: the only claim is PostgreSQL's own (its StatefulSet's
    volumeClaimTemplates, ReadWriteOnce), and neither the work pool's flow-run pods nor any Ray pod
    mounts a volume. Fails if a shared data volume comes back."""
    documents = kubernetes_documents()
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"] == []
    templates = {(d["kind"], d["metadata"]["name"]): d["spec"]["volumeClaimTemplates"]
                 for d in documents if d.get("spec", {}).get("volumeClaimTemplates")}
    assert list(templates) == [("StatefulSet", "postgres")]
    assert [t["spec"]["accessModes"] for t in templates["StatefulSet", "postgres"]] == [["ReadWriteOnce"]]
    assert "ReadWriteMany" not in json.dumps(documents)
    for document in documents:
        for pod in pod_specs(document):
            # a pod may mount a Secret (PostgreSQL's password file), never a claim or a host or network folder
            for volume in pod.get("volumes", []):
                assert set(volume) <= {"name", "secret"}, (document["metadata"]["name"], volume)
            if document["kind"] == "RayCluster":
                assert "volumes" not in pod, document["metadata"]["name"]
                assert all("volumeMounts" not in c for c in pod["containers"]), document["metadata"]["name"]
    template = json.loads((INFRA / "k8s" / "gpu-work-pool.json").read_text())
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert "volumes" not in pod and all("volumeMounts" not in c for c in pod["containers"])
    assert not {name for name in template["variables"]["properties"] if "claim" in name or "volume" in name}
    assert "{{ data_claim }}" not in json.dumps(template)


def test_ray_cluster_uses_token_auth_from_the_secret_the_work_pool_reads():
    """KubeRay (v1.6+) sets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from the Secret named by
    authOptions.secretName on every Ray container; the work pool's flow-run pods, the clients that
    drive the cluster, read the same key of the same Secret. No token value is written anywhere."""
    (cluster,) = [d for d in kubernetes_documents() if d["kind"] == "RayCluster"]
    template = json.loads((INFRA / "k8s" / "gpu-work-pool.json").read_text())
    secret = template["variables"]["properties"]["ray_auth_secret"]["default"]
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": secret} == {
        "mode": "token", "secretName": "seqae-ray-auth"}
    # KubeRay adds the two variables only where a container lacks them: none may set its own
    for container in containers(cluster):
        assert not [e for e in container.get("env", []) if e["name"].startswith("RAY_AUTH")], container["name"]
    (container,) = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert container["env"] == [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "{{ ray_auth_secret }}", "key": "auth_token", "optional": True}}},
    ]
    assert template["job_configuration"]["env"] == "{{ env }}"  # the env variable still reaches the worker
    for path in [*INFRA.rglob("*"), ROOT / "docs" / "scaling-out.md"]:
        if path.is_file() and "__pycache__" not in path.parts:
            text = path.read_text()
            # RAY_AUTH_TOKEN=<value> or auth_token=<value>: only a generated value ("$(openssl ...)")
            for value in re.findall(r"(?:RAY_AUTH_TOKEN|auth_token)=(\S+)", text):
                assert value.startswith('"$('), (path, value)


def test_gpu_work_pool_template_validates_and_renders_with_gpu_requests(prefect_harness):
    """Validated the way Prefect does: the server's WorkPoolCreate schema (every placeholder of the
    job configuration declared as a variable), the variables as a JSON Schema with valid defaults,
    then rendered by prefect-kubernetes' KubernetesWorkerJobConfiguration, which checks the job
    manifest, and prepared for a flow run, exactly as the kubernetes worker does for each flow run."""
    import uuid

    import jsonschema
    from prefect.client.schemas.objects import FlowRun
    from prefect.server.schemas.actions import WorkPoolCreate
    from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration

    template = json.loads((INFRA / "k8s" / "gpu-work-pool.json").read_text())
    WorkPoolCreate(name="seqae-k8s-gpu", type="kubernetes", base_job_template=template)
    jsonschema.Draft202012Validator.check_schema(template["variables"])
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    jsonschema.validate(defaults, template["variables"])
    default = KubernetesWorker.get_default_base_job_template()
    assert set(default["variables"]["properties"]) <= set(template["variables"]["properties"])
    assert set(default["job_configuration"]) == set(template["job_configuration"])

    ray_token = {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "seqae-ray-auth", "key": "auth_token", "optional": True}}}
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(
        template, {"image": "seqae-cuda:test", "gpu_count": 2,
                   "env": {"SEQAE_RAY_ADDRESS": "ray://seqae-ray-head-svc:10001", "RAY_AUTH_MODE": "disabled"}}))
    assert config.namespace == "seqae"
    pod = config.job_manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "seqae-cuda:test"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["envFrom"] == [{"secretRef": {"name": "seqae-object-storage", "optional": True}}]
    assert "volumes" not in pod and "volumeMounts" not in container
    assert container["env"] == [{"name": "RAY_AUTH_MODE", "value": "token"}, ray_token]
    # What the worker does before it creates the Job: the env variable's entries (Prefect's settings and
    # the deployment's env) go first, the template's list after them, one entry per name, the
    # deployment's winning; the secretKeyRef reaches the pod as it is.
    config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="seqae-test"))
    env = config.job_manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), names
    assert {"name": "SEQAE_RAY_ADDRESS", "value": "ray://seqae-ray-head-svc:10001"} in env
    assert {"name": "RAY_AUTH_MODE", "value": "disabled"} in env and ray_token in env
    assert {"PREFECT_API_URL", "PREFECT__FLOW_RUN_ID", "TF_CPP_MIN_LOG_LEVEL"} <= set(names)
    with pytest.raises(Exception, match="minimum|greater than or equal"):
        jsonschema.validate({"gpu_count": -1}, template["variables"])

    # retrains on the same template (docs/scaling-out.md): the CPU image, no GPU, any node, no volume
    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(
        template, {"image": "seqae-cpu:test", "gpu_count": 0, "node_selector": {}}))
    pod = config.job_manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "seqae-cpu:test"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 0
    assert not pod.get("nodeSelector") and "volumes" not in pod and "volumeMounts" not in container


def test_ray_cluster_puts_gpu_workers_on_the_cuda_image_and_keeps_the_dashboard_on_loopback():
    documents = list(yaml.safe_load_all((INFRA / "ray" / "raycluster.yaml").read_text()))
    (cluster,) = [d for d in documents if d["kind"] == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["rayVersion"] == constraints()["ray"]  # the cluster runs the Ray the driver pins
    head_params = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    assert head_params["dashboard-host"] == "127.0.0.1"  # loopback beside the token: a second layer
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"].startswith("seqae-cpu:")
    assert 8265 not in {p["containerPort"] for p in head["ports"]}
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    worker = gpu["template"]["spec"]["containers"][0]
    assert worker["image"].startswith("seqae-cuda:")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "PREFECT_API_URL", "value": "http://prefect-server.seqae.svc:4200/api"} in worker["env"]
    (policy,) = [d for d in documents if d["kind"] == "NetworkPolicy"]
    assert policy["metadata"]["namespace"] == cluster["metadata"]["namespace"]
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]  # this namespace only


@pytest.mark.parametrize("image", ["cpu", "cuda"])
def test_dockerfile_copies_what_exists_and_its_ignore_file_lets_it_through(image):
    dockerfile = DOCKER / f"{image}.Dockerfile"
    sources = [s for line in re.findall(r"^COPY (.+)$", dockerfile.read_text(), re.MULTILINE)
               if "--from=" not in line for s in line.split()[:-1] if not s.startswith("--")]
    assert sources and all((ROOT / s).exists() for s in sources), sources
    allowed = {line[1:].rstrip("/") for line in (DOCKER / f"{image}.Dockerfile.dockerignore")
               .read_text().splitlines() if line.startswith("!")}
    assert {s.rstrip("/") for s in sources} <= allowed


@pytest.mark.slow  # two pip resolutions, about 20 s each
def test_each_image_dependency_set_resolves_to_the_pinned_versions(tmp_path):
    pins = constraints()
    installed = {}
    for image in ("cpu", "cuda"):
        extras = dockerfile_args(INFRA / "docker" / f"{image}.Dockerfile")["SEQAE_EXTRAS"]
        report = tmp_path / f"{image}.json"
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                                 "--report", str(report), "-c", str(ROOT / "constraints.txt"), f"{ROOT}[{extras}]"],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        installed[image] = {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i["metadata"]["version"]
                            for i in json.loads(report.read_text())["install"]}
        # pip freeze (which wrote constraints.txt) leaves out pip, setuptools and wheel; TensorFlow's
        # tree asks for the last two, which the image then takes at the index's newest.
        unpinned = {n: v for n, v in installed[image].items()
                    if n not in ("seqae", "pip", "setuptools", "wheel") and pins.get(n) != v}
        assert not unpinned, f"{image}: resolved outside constraints.txt: {unpinned}"
    assert "tensorflow" in installed["cpu"] and "tensorflow" not in installed["cuda"]
    for image in ("cpu", "cuda"):
        assert {"onnxruntime-gpu", "prefect", "prefect-ray", "ray"} <= set(installed[image]), image
