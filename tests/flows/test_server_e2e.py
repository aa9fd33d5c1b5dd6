"""End to end against a real Prefect server: deployments served, events emitted, runs triggered.

Starts `prefect server start` on 127.0.0.1 on a free port and `python -m flows serve`, emits
seqae.shard.landed for a new shard and waits (bounded) until that shard's output is committed, then
promotes a new model and waits until every output was re-embedded with it. Every process it starts
is stopped at the end.

Run twice: on SQLite with one serving process (one machine), and on a real PostgreSQL (started by the
``postgres`` fixture) with three serving processes polling the same deployments, as several workers
would: each triggered run must run exactly once and no poller may fail.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from seqae.config import ModelConfig, TrainConfig
from seqae.infer import committed_outputs
from seqae.infer.commit import OutputFolder
from seqae.registry import ModelRegistry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url: str, path: str, body: dict | None = None):
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body or {}).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for(what: str, check, timeout: float, logs: list[Path]):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            result = check()
        except Exception:  # the server is still starting
            result = None
        if result:
            return result
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")


@pytest.fixture()
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in reversed(started):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        # The group, not only its leader: `prefect server start` runs uvicorn as a child that can
        # outlive it (seen after a failed start under load), and nothing may outlive the test.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def model_ids(out: Path) -> set[str]:
    folder = OutputFolder(out)  # through the library: the manifest's layout is its business
    return {folder.read_entry(loc.name)["model_id"] for loc in committed_outputs(out)}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request):
    """The server's database settings, how many serving processes poll it, and the PostgreSQL."""
    if request.param == "sqlite":
        return {}, 1, None
    postgres = request.getfixturevalue("postgres")
    return {"PREFECT_API_DATABASE_CONNECTION_URL": postgres.url}, 3, postgres


def start_server_and_serve(tmp_path, processes, data, models, out, *serve_args, server_env=None,
                           pollers: int = 1) -> tuple[str, dict, list[Path], list[subprocess.Popen]]:
    """A Prefect server on a free port (its database from ``server_env``) and ``pollers`` processes of
    ``python -m flows serve`` against it, all ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PREFECT_UI_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    logs = [tmp_path / "server.log"] + [tmp_path / f"serve-{i}.log" for i in range(pollers)]
    with open(logs[0], "w") as log:
        processes.append(subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                           "--port", str(port)], env={**env, **(server_env or {})}, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
    wait_for("the server's health check", lambda: api(url, "/health"), 120, logs)
    servers = []
    for i, path in enumerate(logs[1:]):
        with open(path, "w") as log:
            servers.append(subprocess.Popen([sys.executable, "-m", "flows", "serve", "--data", str(data), "--models",
                                             str(models), "--out", str(out), *serve_args], cwd=ROOT, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        processes.append(servers[-1])
        # One at a time: each serve (re)creates the deployments' automations.
        wait_for(f"serving process {i + 1} polling", lambda: "being served and polling" in path.read_text(), 120, logs)
    wait_for("five deployments and three automations",
             lambda: len(api(url, "/deployments/filter", {})) == 5 and len(api(url, "/automations/filter", {})) == 3,
             90, logs)
    time.sleep(3)  # the server's trigger service loads new automations on its own schedule
    return url, env, logs, servers


def emit_shard_landed(path: Path, env: dict) -> None:
    emitted = subprocess.run([sys.executable, "-m", "flows", "emit-shard-landed", str(path), "--data",
                              str(path.parent)], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert emitted.returncode == 0, emitted.stderr


def test_shard_landed_and_model_promoted_trigger_the_embeds(database, model_dir, mixed_dir, tmp_path, processes):
    from seqae.export import export
    from seqae.train import train

    server_env, pollers, postgres = database
    data, table = mixed_dir
    models, out = tmp_path / "models", tmp_path / "out"
    first = ModelRegistry(models).promote(model_dir, "default")
    url, env, logs, servers = start_server_and_serve(tmp_path, processes, data, models, out, "--drift-alpha", "0",
                                                     server_env=server_env, pollers=pollers)

    pq.write_table(table.slice(0, 10), data / "d.parquet")
    emit_shard_landed(data / "d.parquet", env)
    wait_for("d.parquet embedded by embed-on-arrival", lambda: "d.parquet" in {
        loc.name for loc in committed_outputs(out)}, 120, logs)
    runs = api(url, "/flow_runs/filter", {"deployments": {"name": {"any_": ["embed-on-arrival"]}}})
    assert [r["parameters"]["only"] for r in runs] == [str(data / "d.parquet")]
    assert model_ids(out) == {first.model_id}

    second = tmp_path / "second"
    train(str(data), second, model_config=ModelConfig(units=3), train_config=TrainConfig(max_epochs=1))
    export(second)
    promoted = subprocess.run([sys.executable, "-m", "flows", "promote", str(second), "--models", str(models)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert promoted.returncode == 0, promoted.stderr
    new_id = ModelRegistry(models).current("default").model_id
    assert new_id != first.model_id
    wait_for("every shard re-embedded with the promoted model",
             lambda: len(committed_outputs(out)) == 4 and model_ids(out) == {new_id}, 180, logs)
    promoted_runs = api(url, "/flow_runs/filter", {"deployments": {"name": {"any_": ["embed-on-promotion"]}}})
    assert len(promoted_runs) == 1, [r["state"]["type"] for r in promoted_runs]  # claimed by one poller only
    wait_for("the promoted embed run to finish", lambda: api(url, "/flow_runs/filter", {
        "deployments": {"name": {"any_": ["embed-on-promotion"]}}})[0]["state"]["type"] == "COMPLETED", 120, logs)
    states = [r["state"]["type"] for r in api(url, "/flow_runs/filter", {})]
    assert not {"FAILED", "CRASHED"} & set(states), states
    assert all(server.poll() is None for server in servers), "a serving process died"
    for path in logs[1:]:
        assert "Traceback" not in path.read_text(), path.read_text()[-3000:]
    if postgres is not None:  # the server kept its state in PostgreSQL, not in a SQLite file
        assert postgres.query("SELECT count(*) FROM deployment") == "5"
        assert int(postgres.query("SELECT count(*) FROM flow_run")) == len(states)
        assert not list((tmp_path / "prefect").glob("*.db"))


def test_drift_closes_the_loop_retrain_promote_re_embed(model_dir, tmp_path, processes, make_sine_table):
    """A shifted shard lands: embed-on-arrival embeds it, its drift check emits seqae.drift.detected,
    retrain-on-drift trains, exports, fits a threshold and promotes, and the promotion re-embeds every
    shard with the new model: the whole loop, through the server's triggers only."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data, models, out = tmp_path / "in", tmp_path / "models", tmp_path / "out"
    data.mkdir()
    table = make_sine_table(n=120, length=12, seed=9)
    pq.write_table(table, data / "a.parquet")
    first = ModelRegistry(models).promote(model_dir, "default")
    url, env, logs, _ = start_server_and_serve(tmp_path, processes, data, models, out, "--drift-alpha", "0.01",
                                               "--drift-min-rows", "100", "--epochs", "1")
    shifted = table.set_column(table.schema.get_field_index("values"), "values", pa.array(
        [[3 * v + 4 for v in row] for row in table.column("values").to_pylist()], pa.list_(pa.float32())))
    shifted = shifted.set_column(0, "id", pc.add(shifted.column("id"), 10_000))
    pq.write_table(shifted, data / "shifted.parquet")
    emit_shard_landed(data / "shifted.parquet", env)
    wait_for("a drift-triggered retrain promoting a new model",
             lambda: ModelRegistry(models).current("default").model_id != first.model_id, 300, logs)
    new_id = ModelRegistry(models).current("default").model_id
    wait_for("both shards embedded with the retrained model",
             lambda: len(committed_outputs(out)) == 2 and model_ids(out) == {new_id}, 180, logs)
    retrains = api(url, "/flow_runs/filter", {"deployments": {"name": {"any_": ["retrain-on-drift"]}}})
    assert retrains and retrains[0]["parameters"]["train"]["max_epochs"] == 1
    assert len(retrains) == 1 and retrains[0]["parameters"]["drift_episode"]  # one retrain for the episode
