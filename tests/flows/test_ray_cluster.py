"""Issue #26 item 4: the embed flow on a Ray cluster of two nodes on this machine (``ray start --head``
and ``ray start --address``, each with its own temporary folder), reached as a remote cluster is, by
Ray Client (``ray://``), with the data, the registry and the outputs on the S3 server. A clean run
puts shards on both nodes; then the second node is killed mid-shard (every process of it, its raylet
included) and the run fails that shard alone; the rerun, on the node left, embeds it: every row
exactly once, the same tables as the clean run."""

import contextlib
import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from seqae.config import EmbedConfig
from seqae.infer import committed_outputs
from seqae.modelstore import upload_model_dir
from seqae.registry import ModelRegistry
from seqae.storage import Location

pytestmark = pytest.mark.slow

if os.environ.get("CI"):
    import prefect_ray  # noqa: F401  CI installs the ray extra: a missing one is a failure there
else:
    pytest.importorskip("prefect_ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from tests.flows.ray_cluster import TwoNodeCluster  # noqa: E402
from tests.test_object_store_lifecycle import keys  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARDS, ROWS = 6, 20
#: Most seconds one embed run may take here (the flow's own timeout, for this test).
RUN_SECONDS = 240


@contextlib.contextmanager
def ray_token(token: str):
    """This process (the Ray driver) authenticates with ``token``; Ray reads its settings once, so
    they are read again on the way in and on the way out (later tests start Ray without a token)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture()
def ray_cluster(s3):
    """Two Ray nodes with what a pod gets in its environment: the code, the store's endpoint and
    credentials, Ray's token; no Prefect setting (the flow sends PREFECT_API_URL in the job's
    runtime_env). Torn down whatever happens."""
    token = secrets.token_hex(32)  # Ray 2.60 authenticates clients by token
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
           "AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": s3.secret, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3.endpoint, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_USAGE_STATS_ENABLED": "0",
           # a dead node is declared dead after about 3 s, not Ray's default 15 s and more
           "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
    started = time.monotonic()
    cluster = None
    with ray_token(token):
        try:
            cluster = TwoNodeCluster.start(env)  # each node also gets SEQAE_TEST_NODE=<its name>
            print(f"\ntwo Ray nodes up in {time.monotonic() - started:.0f} s", file=sys.stderr)
            yield cluster
        finally:
            if cluster is not None:
                cluster.stop()


def sorted_rows(out: str) -> pa.Table:
    tables = [pq.read_table(loc.path, filesystem=loc.filesystem) for loc in committed_outputs(out)]
    return pa.concat_tables(tables).sort_by("id")


def test_shards_on_two_nodes_a_node_killed_mid_run_and_the_rerun_equals_a_clean_run(
        prefect_harness, s3, ray_cluster, model_dir, make_sine_table, monkeypatch, tmp_path):
    from flows.definitions import embed

    bucket = f"s3://{s3.bucket}"
    data, models = f"{bucket}/data", f"{bucket}/models"
    table = make_sine_table(n=SHARDS * ROWS, length=12, seed=8)
    for i in range(SHARDS):
        shard = Location.of(f"{data}/s{i}.parquet")
        pq.write_table(table.slice(i * ROWS, ROWS), shard.path, filesystem=shard.filesystem)
    upload_model_dir(model_dir, f"{bucket}/staging/m")
    ModelRegistry(models).promote(f"{bucket}/staging/m", "ecg")
    config = EmbedConfig(device="cpu", read_batch_size=5)
    flow = embed.with_options(timeout_seconds=RUN_SECONDS)

    def run(out: str, **options):
        return flow(data, out, models, "ecg", config=config, drift=None, ray_address=ray_cluster.address,
                    concurrency=SHARDS, **options)

    # 1. A clean run: shard tasks on both nodes, each result naming its node.
    started = time.monotonic()
    clean = run(f"{bucket}/clean")
    print(f"clean run: {time.monotonic() - started:.0f} s", file=sys.stderr)
    assert clean["totals"]["shards_done"] == SHARDS and clean["totals"]["rows_written"] == SHARDS * ROWS
    ran_on = {Path(shard).name: where["node"] for shard, where in clean["placement"].items()}
    print(f"\nclean run, shard -> node: {json.dumps(ran_on, indent=1)}", file=sys.stderr)
    assert set(ran_on.values()) == set(ray_cluster.node_ids.values()), (ran_on, ray_cluster.node_ids)

    # 2. The second node killed mid-shard: its worker stalls after writing a shard's first batch,
    #    and every process of the node is SIGKILLed. No Ray retries, so that shard fails alone.
    out = f"{bucket}/killed"
    marker = tmp_path / "stalled"
    monkeypatch.setenv("SEQAE_RAY_MAX_RETRIES", "0")
    monkeypatch.setenv("SEQAE_RAY_RUNTIME_ENV", json.dumps({
        "worker_process_setup_hook": "ray_faults.stall_on_node",
        "env_vars": {"SEQAE_TEST_STALL_NODE": "worker", "SEQAE_TEST_STALL_MARKER": str(marker)}}))
    killed = threading.Event()

    def kill_when_stalled():
        deadline = time.monotonic() + RUN_SECONDS
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if marker.exists():
            ray_cluster.kill("worker")
            killed.set()

    killer = threading.Thread(target=kill_when_stalled, daemon=True)
    killer.start()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"shard\(s\) failed \(the others are committed\)") as failure:
        run(out)
    killer.join(timeout=RUN_SECONDS)
    print(f"run with a node killed: {time.monotonic() - started:.0f} s", file=sys.stderr)
    assert killed.is_set(), "the second node never reached the stall point"
    stalled, pid, rows = marker.read_text().split()
    assert int(rows) > 0 and stalled in str(failure.value)  # killed with part of its data file written
    committed = [loc.name for loc in committed_outputs(out)]
    assert stalled not in committed and len(committed) < SHARDS

    # 3. The rerun, on the node left: the committed shards skipped, the lost ones embedded.
    monkeypatch.delenv("SEQAE_RAY_RUNTIME_ENV")
    started = time.monotonic()
    rerun = run(out)
    print(f"rerun: {time.monotonic() - started:.0f} s", file=sys.stderr)
    statuses = {Path(s["output"]).name: s["status"] for s in rerun["shards"]}
    assert statuses == {f"s{i}.parquet": "skipped" if f"s{i}.parquet" in committed else "done"
                        for i in range(SHARDS)}
    assert {where["node"] for where in rerun["placement"].values()} == {ray_cluster.node_ids["head"]}
    got, want = sorted_rows(out), sorted_rows(f"{bucket}/clean")
    assert got.num_rows == SHARDS * ROWS and pc.count_distinct(got["id"]).as_py() == SHARDS * ROWS  # each once
    assert got.to_pylist() == want.to_pylist()
    # What a folder reader (DuckDB, Polars) sees is what a clean run leaves; nothing of the killed
    # writer is left in the staging area (the rerun took over its expired lease and replaced its file).
    assert [k for k in keys(out) if k.startswith("embeddings/")] == [
        k for k in keys(f"{bucket}/clean") if k.startswith("embeddings/")]
    assert [k for k in keys(out) if k.startswith("_seqae/staging/")] == []
