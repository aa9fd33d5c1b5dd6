"""infra/: what can be checked without a container engine or a cluster. Every YAML and JSON file parses;
the compose file has the Prefect server on PostgreSQL, a worker and a data volume, and no secret; the
Kubernetes work-pool template passes Prefect's own validation and renders through the kubernetes
worker's job configuration with its GPU requests; the Ray cluster asks for GPUs from the CUDA image;
each image's Python dependency set resolves with constraints.txt to the pinned versions."""

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", path.read_text(), re.MULTILINE))


def test_every_yaml_and_json_file_parses():
    files = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
    assert {p.relative_to(INFRA).as_posix() for p in files} >= {"compose.yaml", "k8s/gpu-work-pool.json",
                                                              "ray/raycluster.yaml"}
    for path in files:
        documents = [json.loads(path.read_text())] if path.suffix == ".json" else list(
            yaml.safe_load_all(path.read_text()))
        assert documents and all(isinstance(d, dict) for d in documents), path


def test_no_secret_is_written_in_infra():
    for path in INFRA.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"AKIA[0-9A-Z]{16}", text), path  # an AWS access key id
            for key, value in re.findall(r"^\s*(\w*(?:PASSWORD|SECRET_ACCESS_KEY|SESSION_TOKEN)):\s*(\S+)", text,
                                         re.MULTILINE):
                assert value.startswith("${") or value in ("|", ">"), (path, key, value)


def test_compose_runs_the_prefect_server_on_postgresql_with_a_worker_and_a_data_volume():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker"} <= set(services)
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:${")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "data:/data" in worker["volumes"] and "data" in compose["volumes"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    # the pool the worker polls is the one prefect.yaml deploys to
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["work_pool"]["name"]
    assert worker["command"][worker["command"].index("--pool") + 1] == pool


def test_gpu_work_pool_template_validates_and_renders_with_gpu_requests(prefect_harness):
    """Validated the way Prefect does: the server's WorkPoolCreate schema (every placeholder of the
    job configuration declared as a variable), the variables as a JSON Schema with valid defaults,
    then rendered by prefect-kubernetes' KubernetesWorkerJobConfiguration, which checks the job
    manifest, exactly as the kubernetes worker does for each flow run."""
    import jsonschema
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

    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(
        template, {"image": "seqae-cuda:test", "gpu_count": 2}))
    pod = config.job_manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "seqae-cuda:test"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["envFrom"] == [{"secretRef": {"name": "seqae-object-storage", "optional": True}}]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "seqae-data"
    with pytest.raises(Exception, match="minimum|greater than or equal"):
        jsonschema.validate({"gpu_count": -1}, template["variables"])


def test_ray_cluster_puts_gpu_workers_on_the_cuda_image():
    cluster = yaml.safe_load((INFRA / "ray" / "raycluster.yaml").read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert cluster["spec"]["rayVersion"] == constraints()["ray"]  # the cluster runs the Ray the driver pins
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"].startswith("seqae-cpu:")
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    worker = gpu["template"]["spec"]["containers"][0]
    assert worker["image"].startswith("seqae-cuda:")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "PREFECT_API_URL", "value": "http://prefect-server.seqae.svc:4200/api"} in worker["env"]


@pytest.mark.parametrize("image", ["cpu", "cuda"])
def test_dockerfile_copies_what_exists_and_its_ignore_file_lets_it_through(image):
    dockerfile = INFRA / "docker" / f"{image}.Dockerfile"
    sources = [s for line in re.findall(r"^COPY (.+)$", dockerfile.read_text(), re.MULTILINE)
               for s in line.split()[:-1]]
    assert sources and all((ROOT / s).exists() for s in sources), sources
    allowed = {line[1:].rstrip("/") for line in (INFRA / "docker" / f"{image}.Dockerfile.dockerignore")
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
