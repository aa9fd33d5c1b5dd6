"""Where the embed flow's shard tasks run: local threads by default, Ray (prefect-ray) when an address
is given.

    embed(..., ray_address=None)        threads in the flow's process (or SEQAE_RAY_ADDRESS when set)
    embed(..., ray_address="local")     a Ray runtime started on this machine for the run ("auto" too)
    embed(..., ray_address="ray://head:10001")   an existing Ray cluster, through Ray Client (the
                                                 flow's process is a client; the driver runs on the
                                                 head, so losing any other node never loses the run)

Ray workers are other processes, often on other machines, so what they need travels with the job:
the Prefect API URL (without it every worker starts its own temporary Prefect server and its task
runs land in its own database), analytics off, and where task results are kept. Secrets (the
Prefect API key, storage credentials) are not sent: Ray shows a job's runtime environment to anyone
with the dashboard, so workers take them from their own environment (a Kubernetes secret, an
instance role), as the images in infra/ do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from prefect.settings import get_current_settings
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from seqae._optional import import_optional

#: The default Ray address when the flow is given none ("local" starts a Ray runtime here).
RAY_ADDRESS_ENV = "SEQAE_RAY_ADDRESS"
#: CPUs of a local Ray runtime (default: Ray's own count of this machine's cores).
RAY_NUM_CPUS_ENV = "SEQAE_RAY_NUM_CPUS"
#: More of Ray's runtime_env as JSON (e.g. {"pip": [...]} or a worker_process_setup_hook), merged in.
RAY_RUNTIME_ENV_ENV = "SEQAE_RAY_RUNTIME_ENV"
#: Times Ray reruns a shard task whose worker died (default: Ray's own, 3). The rerun is safe: a
#: shard is committed by its manifest entry alone, and nothing of a killed attempt is ever committed.
RAY_MAX_RETRIES_ENV = "SEQAE_RAY_MAX_RETRIES"
#: Shard tasks sharing one GPU (default 1: each task asks for a whole GPU). One task embeds one shard
#: in one thread (read, score, write in turn), which cannot keep an H200 busy; 4 tasks per GPU (each
#: process with its own session) can (docs/scaling-out.md).
RAY_TASKS_PER_GPU_ENV = "SEQAE_RAY_TASKS_PER_GPU"
#: Ray's environment variable for a setup hook given by module path: what ``ray.init`` turns
#: ``runtime_env["worker_process_setup_hook"]`` into on a driver (Ray 2.60,
#: ``ray/_private/runtime_env/setup_hook.py``: ``export_setup_func_module``). Ray Client (``ray://``)
#: skips that step, and the hook would silently never run on the cluster; the flow sets it itself.
SETUP_HOOK_ENV = "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"
#: Addresses that mean "start a Ray runtime on this machine for this run".
LOCAL_ADDRESSES = frozenset({"local", "auto"})
#: Shard tasks in flight at most: threads share this process; Ray spreads them over the cluster.
MAX_THREAD_CONCURRENCY = 16
MAX_RAY_CONCURRENCY = 1024


def resolve_ray_address(given: str | None) -> str | None:
    """The flow's ``ray_address`` parameter, else ``SEQAE_RAY_ADDRESS``; None (threads) when neither."""
    address = given if given is not None else os.environ.get(RAY_ADDRESS_ENV)
    address = (address or "").strip()
    return address or None


def api_url() -> str | None:
    """The Prefect API this process reports to: ``PREFECT_API_URL``, or the temporary server Prefect
    started for this run when none is set (it listens on 127.0.0.1: a local Ray runtime's workers
    reach it, a remote cluster's do not)."""
    url = get_current_settings().api.url
    if url:
        return str(url)
    from prefect.server.api.server import SubprocessASGIServer

    temporary = SubprocessASGIServer()  # the process's one temporary server, if Prefect started it
    return temporary.api_url if temporary.running else None


def worker_env(local: bool = True) -> dict[str, str]:
    """Settings every Ray worker needs to report to the same Prefect server as the flow.

    Raises:
        ValueError: a remote cluster (``local`` false) and no ``PREFECT_API_URL``: its workers would
            each start a temporary server of their own and their task runs would be lost to the flow.
    """
    settings = get_current_settings()
    env = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    url = api_url() if local else (str(settings.api.url) if settings.api.url else None)
    if url:
        env["PREFECT_API_URL"] = url
    elif not local:
        raise ValueError("a Ray cluster needs a Prefect server its workers can reach: set PREFECT_API_URL "
                         "(e.g. http://prefect-server:4200/api) where the flow runs")
    if settings.results.default_storage_block:
        env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] = str(settings.results.default_storage_block)
    if os.environ.get("PREFECT_RESULTS_LOCAL_STORAGE_PATH") or os.environ.get("PREFECT_LOCAL_STORAGE_PATH"):
        # Results must be where every worker can read them: a shared volume, named by the operator.
        env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(settings.results.local_storage_path)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION",
                 "SEQAE_STORAGE_SECRET_BLOCK"):  # a block's name, not its value (flows/credentials.py)
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def runtime_env(local: bool = True, client: bool = False) -> dict[str, Any]:
    """Ray's ``runtime_env`` for the run: ``worker_env()`` plus ``SEQAE_RAY_RUNTIME_ENV``. Through
    Ray Client (``client``: a ``ray://`` address) a ``worker_process_setup_hook`` (a module path) is
    also put where Ray's workers look for it (``SETUP_HOOK_ENV``), as ``ray.init`` does elsewhere."""
    extra = json.loads(os.environ.get(RAY_RUNTIME_ENV_ENV) or "{}")
    if not isinstance(extra, dict):
        raise ValueError(f"{RAY_RUNTIME_ENV_ENV}: expected a JSON object (Ray's runtime_env), got {extra!r}")
    env = {**extra, "env_vars": {**worker_env(local), **extra.get("env_vars", {})}}
    hook = extra.get("worker_process_setup_hook")
    if client and hook is not None:
        if not isinstance(hook, str) or not hook.strip():
            raise ValueError(f"{RAY_RUNTIME_ENV_ENV}: worker_process_setup_hook: expected a module path such as "
                             f"'mypackage.setup_worker', got {hook!r}")
        env["env_vars"].setdefault(SETUP_HOOK_ENV, hook)
    return env


def shard_task_runner(address: str | None) -> tuple[TaskRunner, int]:
    """The task runner for the shard tasks and the most tasks to keep in flight with it.

    Args:
        address: ``None`` for threads in this process; ``"local"``/``"auto"`` for a Ray runtime
            started here; otherwise the address of a running Ray cluster (``ray://head:10001``).
    """
    if address is None:
        return ThreadPoolTaskRunner(max_workers=MAX_THREAD_CONCURRENCY), MAX_THREAD_CONCURRENCY
    RayTaskRunner = import_optional("prefect_ray", "ray", needed_for=f"ray_address={address!r}").RayTaskRunner
    init_kwargs: dict[str, Any] = {"runtime_env": runtime_env(local=address in LOCAL_ADDRESSES,
                                                              client=address.startswith("ray://"))}
    if address in LOCAL_ADDRESSES:
        init_kwargs["include_dashboard"] = False
        if os.environ.get(RAY_NUM_CPUS_ENV):
            init_kwargs["num_cpus"] = int(os.environ[RAY_NUM_CPUS_ENV])
        return RayTaskRunner(init_kwargs=init_kwargs), MAX_RAY_CONCURRENCY
    return RayTaskRunner(address=address, init_kwargs=init_kwargs), MAX_RAY_CONCURRENCY


#: Ray Client connection attempts. The head's client proxy forks a server for each client, and in Ray
#: 2.60 that fork dies at start a few percent of the time (a gRPC poller race, ray-project/ray#63202,
#: open): ``ray.init`` raises "Initialization failure from server" before any work is sent, so
#: connecting again is safe.
RAY_CLIENT_ATTEMPTS = 3
_CLIENT_START_FAILED = "Initialization failure from server"


@contextlib.contextmanager
def ray_client_connection(runner: Any) -> Iterator[None]:
    """Connect this process to the ``ray://`` cluster of ``runner`` (a ``RayTaskRunner``) before the
    runner does, retrying a client server that died at start (``RAY_CLIENT_ATTEMPTS``), and disconnect
    after; the runner uses the connection it finds. Any other runner: nothing."""
    address = getattr(runner, "address", None)
    if not (isinstance(address, str) and address.startswith("ray://")):
        yield
        return
    import ray

    for attempt in range(1, RAY_CLIENT_ATTEMPTS + 1):
        try:
            ray.init(address, **runner.init_kwargs)
            break
        except ConnectionAbortedError as exc:
            with contextlib.suppress(Exception):
                ray.shutdown()
            if attempt == RAY_CLIENT_ATTEMPTS or _CLIENT_START_FAILED not in str(exc):
                raise
            logging.getLogger(__name__).warning(
                "Ray Client: the cluster's server for this client failed to start (attempt %d of %d; "
                "ray-project/ray#63202), connecting again", attempt, RAY_CLIENT_ATTEMPTS)
            time.sleep(attempt)
    try:
        yield
    finally:
        ray.shutdown()


def shard_resources(device: str, on_ray: bool) -> contextlib.AbstractContextManager:
    """The Ray options of each shard task submitted inside the block: one GPU when the model runs
    on CUDA (``1 / SEQAE_RAY_TASKS_PER_GPU``), and ``SEQAE_RAY_MAX_RETRIES`` when set (nothing to ask
    of threads).

    ``device="cuda"`` asks for a GPU and fails at once on a cluster without one (the tasks would
    wait forever); ``"auto"`` asks for one when the cluster has GPUs; ``"cpu"`` never does.
    """
    if not on_ray:
        return contextlib.nullcontext()
    import ray
    from prefect_ray.context import remote_options

    gpus = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and not gpus:
        raise RuntimeError("device cuda: the Ray cluster has no GPU resource (ray.cluster_resources() lists "
                           "none); start the workers with GPUs or use device auto or cpu")
    options: dict[str, Any] = {}
    if device == "cuda" or (device == "auto" and gpus):
        per_gpu = int(os.environ.get(RAY_TASKS_PER_GPU_ENV) or 1)
        if per_gpu < 1:
            raise ValueError(f"{RAY_TASKS_PER_GPU_ENV}: expected a positive integer, got {per_gpu}")
        options["num_gpus"] = 1 / per_gpu
    if os.environ.get(RAY_MAX_RETRIES_ENV):
        options["max_retries"] = int(os.environ[RAY_MAX_RETRIES_ENV])
    return remote_options(**options)
