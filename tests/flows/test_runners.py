"""Choosing the shard tasks' runner and their Ray options, without starting Ray."""

import json

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runners import resolve_ray_address, shard_resources, shard_task_runner

prefect_ray = pytest.importorskip("prefect_ray")


def test_the_parameter_wins_over_the_environment_and_blank_means_threads(monkeypatch):
    monkeypatch.delenv("SEQAE_RAY_ADDRESS", raising=False)
    assert resolve_ray_address(None) is None
    monkeypatch.setenv("SEQAE_RAY_ADDRESS", "ray://head:10001")
    assert resolve_ray_address(None) == "ray://head:10001"
    assert resolve_ray_address("local") == "local"
    assert resolve_ray_address("  ") is None
    runner, most = shard_task_runner(None)
    assert isinstance(runner, ThreadPoolTaskRunner) and most == 16


def test_ray_workers_get_the_api_url_and_settings_but_no_secret(monkeypatch):
    monkeypatch.setenv("SEQAE_RAY_NUM_CPUS", "2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-not-for-ray")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("SEQAE_RAY_RUNTIME_ENV", json.dumps({"pip": ["x"], "env_vars": {"EXTRA": "1"}}))
    with temporary_settings({PREFECT_API_URL: "http://prefect:4200/api"}):
        local, most = shard_task_runner("local")
        remote, _ = shard_task_runner("ray://head:10001")
    assert isinstance(local, prefect_ray.RayTaskRunner) and most == 1024
    assert local.address is None and remote.address == "ray://head:10001"
    assert local.init_kwargs["num_cpus"] == 2 and local.init_kwargs["include_dashboard"] is False
    assert "num_cpus" not in remote.init_kwargs  # a cluster has its own resources
    env = local.init_kwargs["runtime_env"]
    assert env["pip"] == ["x"]
    assert env["env_vars"]["PREFECT_API_URL"] == "http://prefect:4200/api"
    assert env["env_vars"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["env_vars"]["AWS_ENDPOINT_URL"] == "http://minio:9000" and env["env_vars"]["EXTRA"] == "1"
    assert "wJalrXUtnFEMI-not-for-ray" not in json.dumps(local.init_kwargs)


@pytest.mark.parametrize("device, gpus, per_gpu, expected", [
    ("cuda", 4, None, {"num_gpus": 1.0}),
    ("auto", 4, None, {"num_gpus": 1.0}),
    ("auto", 4, "4", {"num_gpus": 0.25}),
    ("auto", 0, None, {}),
    ("cpu", 4, None, {}),
])
def test_each_shard_task_asks_for_a_gpu_when_the_model_runs_on_cuda(monkeypatch, device, gpus, per_gpu, expected):
    import ray
    from prefect_ray.context import RemoteOptionsContext

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, **({"GPU": float(gpus)} if gpus else {})})
    if per_gpu:
        monkeypatch.setenv("SEQAE_RAY_TASKS_PER_GPU", per_gpu)
    with shard_resources(device, on_ray=True):
        assert RemoteOptionsContext.get().current_remote_options == expected
    with shard_resources(device, on_ray=False):
        assert RemoteOptionsContext.get().current_remote_options == {}


def test_cuda_on_a_cluster_without_gpus_fails_at_once(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0})
    with pytest.raises(RuntimeError, match="device cuda: the Ray cluster has no GPU resource"):
        shard_resources("cuda", on_ray=True)


def test_a_remote_cluster_without_a_prefect_server_is_refused():
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(ValueError, match="a Ray cluster needs a Prefect server its workers can reach"):
            shard_task_runner("ray://head:10001")



def test_a_setup_hook_reaches_the_workers_through_ray_client_too(monkeypatch):
    """Ray Client drops ``worker_process_setup_hook`` (the driver-side step that turns it into an
    environment variable never runs there): the flow sets that variable itself for ``ray://``."""
    monkeypatch.setenv("SEQAE_RAY_RUNTIME_ENV", json.dumps({"worker_process_setup_hook": "pkg.setup"}))
    with temporary_settings({PREFECT_API_URL: "http://prefect:4200/api"}):
        client, _ = shard_task_runner("ray://head:10001")
        attached, _ = shard_task_runner("head:6379")
        local, _ = shard_task_runner("local")
    assert client.init_kwargs["runtime_env"]["env_vars"]["__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"] == "pkg.setup"
    for runner in (attached, local):  # a driver of its own: ray.init does it
        assert "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR" not in runner.init_kwargs["runtime_env"]["env_vars"]
        assert runner.init_kwargs["runtime_env"]["worker_process_setup_hook"] == "pkg.setup"
    monkeypatch.setenv("SEQAE_RAY_RUNTIME_ENV", json.dumps({"worker_process_setup_hook": ["pkg.setup"]}))
    with temporary_settings({PREFECT_API_URL: "http://prefect:4200/api"}):
        with pytest.raises(ValueError, match=r"^SEQAE_RAY_RUNTIME_ENV: worker_process_setup_hook: expected a module "
                                             r"path such as 'mypackage.setup_worker', got \['pkg.setup'\]$"):
            shard_task_runner("ray://head:10001")


def test_a_ray_client_server_that_dies_at_start_is_connected_again(monkeypatch, caplog):
    """Ray 2.60's client proxy loses the server it forks for a client a few percent of the time
    (ray-project/ray#63202): ``ray.init`` fails before any work is sent, and the flow connects again."""
    import ray

    from flows import runners

    calls, shutdowns = [], []

    def init(address, **kwargs):
        calls.append((address, kwargs))
        if len(calls) < runners.RAY_CLIENT_ATTEMPTS:
            raise ConnectionAbortedError("Initialization failure from server:\nTraceback ... ZombieProcess")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(len(calls)))
    monkeypatch.setattr(runners.time, "sleep", lambda seconds: None)
    with temporary_settings({PREFECT_API_URL: "http://prefect:4200/api"}):
        client, _ = shard_task_runner("ray://head:10001")
        local, _ = shard_task_runner("local")
    with caplog.at_level("WARNING", logger="flows.runners"), runners.ray_client_connection(client):
        assert len(calls) == runners.RAY_CLIENT_ATTEMPTS and shutdowns == [1, 2]  # each failed try let go
    assert calls[-1] == ("ray://head:10001", client.init_kwargs) and shutdowns == [1, 2, 3]  # disconnected after
    assert caplog.text.count("failed to start (attempt") == runners.RAY_CLIENT_ATTEMPTS - 1
    # Every attempt failing, or another failure: the error as Ray raised it, after as many attempts.
    for message, attempts in (("Initialization failure from server:\nTraceback ... ZombieProcess",
                               runners.RAY_CLIENT_ATTEMPTS), ("the token was refused", 1)):
        def fails(address, message=message, **kwargs):
            calls.append(address)
            raise ConnectionAbortedError(message)

        calls.clear()
        monkeypatch.setattr(ray, "init", fails)
        with pytest.raises(ConnectionAbortedError, match=message.split(":")[0]):
            with runners.ray_client_connection(client):
                pass
        assert calls == ["ray://head:10001"] * attempts
    with runners.ray_client_connection(local):  # a runtime of its own: the runner starts it
        pass
    assert calls == ["ray://head:10001"]
