"""The embed flow on a real local Ray runtime (2 CPUs, no dashboard) through prefect-ray: the same
outputs as the local run, one session per worker process, and a worker killed mid-shard."""

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from seqae.config import EmbedConfig
from seqae.infer import committed_outputs
from seqae.infer.commit import OutputFolder
from seqae.storage import is_temporary

pytestmark = pytest.mark.slow

if os.environ.get("CI"):
    import prefect_ray  # noqa: F401  CI installs the ray extra: a missing one is a failure there
else:
    pytest.importorskip("prefect_ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture()
def shards(tmp_path, mixed_dir, make_sine_table):
    """Six shards: the three of mixed_dir (one with bad rows) and three more."""
    data, _ = mixed_dir
    extra = make_sine_table(n=90, length=12, seed=11)
    for i in range(3):
        pq.write_table(extra.slice(i * 30, 30), data / f"d{i}.parquet")
    return data


@pytest.fixture()
def local_ray(monkeypatch):
    monkeypatch.setenv("SEQAE_RAY_NUM_CPUS", "2")
    yield
    import ray

    assert not ray.is_initialized(), "the Ray runtime the flow started outlived it"


def outputs(out) -> dict[str, object]:
    return {loc.name: pq.read_table(loc.path) for loc in committed_outputs(out)}


def entries(out) -> dict[str, dict]:
    folder = OutputFolder(out)
    return {name: folder.read_entry(name) for name in folder.entry_names()}


def assert_same_outputs(out, reference):
    got, want = outputs(out), outputs(reference)
    assert sorted(got) == sorted(want) == ["a.parquet", "b.parquet", "c.parquet", "d0.parquet", "d1.parquet",
                                           "d2.parquet"]
    for name, table in want.items():
        assert got[name].equals(table), name
    for name, entry in entries(out).items():
        expected = entries(reference)[name]
        for key in ("source", "fingerprint", "rows_in", "rows_written", "rows_rejected", "model_id", "onnx_sha256"):
            assert entry[key] == expected[key], (name, key)
    summary = OutputFolder(out).last_run()
    totals = summary["totals"]
    assert totals["rows_in"] == totals["rows_written"] + totals["rows_rejected"] == 180
    assert totals["rows_rejected"] == 3
    return summary


def test_ray_run_equals_the_local_run_shard_for_shard(prefect_harness, local_ray, model_dir, shards, tmp_path):
    from flows.definitions import embed

    config = EmbedConfig(device="cpu", read_batch_size=7)
    local = embed(str(shards), str(tmp_path / "local"), model_dir=str(model_dir), config=config, drift=None)
    assert local["workers"] == [{"pid": os.getpid(), "host": local["workers"][0]["host"], "shards": 6,
                                 "sessions_opened": local["workers"][0]["sessions_opened"]}]

    on_ray = embed(str(shards), str(tmp_path / "ray"), model_dir=str(model_dir), config=config, drift=None,
                   ray_address="local", concurrency=6)
    assert on_ray["totals"] == local["totals"] == {"shards": 6, "shards_done": 6, "shards_skipped": 0,
                                                   "rows_in": 180, "rows_written": 177, "rows_rejected": 3}
    assert_same_outputs(tmp_path / "ray", tmp_path / "local")
    workers = on_ray["workers"]
    # Other processes than this one, each opening the model once for all the shards it ran.
    assert os.getpid() not in {w["pid"] for w in workers}
    assert all(w["sessions_opened"] == 1 for w in workers), workers
    assert sum(w["shards"] for w in workers) == 6 and max(w["shards"] for w in workers) > 1, workers


@pytest.mark.parametrize("max_retries", ["0", "3"])
def test_a_worker_killed_mid_shard_leaves_nothing_committed_and_the_rerun_completes(
        prefect_harness, local_ray, monkeypatch, model_dir, shards, tmp_path, max_retries):
    """``ray_faults.install`` runs in every Ray worker and SIGKILLs the one that has written the first
    batch of c.parquet. With no Ray retries the shard fails alone and the rerun embeds it, skipping the
    five committed; with Ray's retries the task reruns on a new worker within the same flow run."""
    from flows.definitions import embed

    config = EmbedConfig(device="cpu", read_batch_size=7)
    embed(str(shards), str(tmp_path / "local"), model_dir=str(model_dir), config=config, drift=None)
    marker, out = tmp_path / "killed", tmp_path / "ray"
    monkeypatch.setenv("SEQAE_RAY_MAX_RETRIES", max_retries)
    monkeypatch.setenv("SEQAE_RAY_RUNTIME_ENV", json.dumps({
        "worker_process_setup_hook": "ray_faults.install",
        "env_vars": {"PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]), "SEQAE_TEST_KILL_SHARD": "c.parquet",
                     "SEQAE_TEST_KILL_MARKER": str(marker)}}))

    def run():
        return embed(str(shards), str(out), model_dir=str(model_dir), config=config, drift=None,
                     ray_address="local", concurrency=6)

    if max_retries == "0":
        with pytest.raises(RuntimeError, match=r"1 of 6 shard\(s\) failed \(the others are committed\): .*c\.parquet"):
            run()
        assert sorted(entries(out)) == ["a.parquet", "b.parquet", "d0.parquet", "d1.parquet", "d2.parquet"]
    else:
        first = run()
        assert first["totals"]["shards_done"] == 6
    pid, rows = map(int, marker.read_text().split())
    assert pid != os.getpid() and rows > 0  # a Ray worker died with part of c.parquet written
    # What it wrote is under a hidden temporary name in the staging folder, never a visible or committed file.
    leftovers = [p.name for p in (out / "_seqae" / "staging").iterdir() if is_temporary(p.name)]
    assert leftovers and all(name.startswith(".c.parquet.") for name in leftovers)

    rerun = run()
    statuses = {Path(s["output"]).name: s["status"] for s in rerun["shards"]}
    skipped = {"a.parquet", "b.parquet", "d0.parquet", "d1.parquet", "d2.parquet"}
    if max_retries == "0":
        assert statuses == {**dict.fromkeys(skipped, "skipped"), "c.parquet": "done"}
    else:
        assert set(statuses.values()) == {"skipped"}
    assert_same_outputs(out, tmp_path / "local")
    # The rerun found the folder idle and removed what the killed worker left.
    assert not [p.name for p in out.rglob("*") if is_temporary(p.name)]
    visible = sorted(p.name for p in (out / "embeddings").iterdir() if p.is_file())
    assert visible == sorted(entries(out))
