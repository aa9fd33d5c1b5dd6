"""Crashes at random points: whatever a SIGKILL leaves, the rerun equals a clean run."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from seqae.config import EmbedConfig, ModelConfig, TrainConfig
from seqae.infer import committed_outputs, embed

pytestmark = pytest.mark.slow


def listing(folder: Path) -> list[str]:
    # The run reports and the folder state record times; the lock file stays after a kill.
    skip = {"state.json", "lock"}
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.name not in skip and p.parent.name != "runs")


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory, make_sine_table):
    data = tmp_path_factory.mktemp("many")
    table = make_sine_table(n=600, length=12, seed=9)
    for i in range(30):
        pq.write_table(table.slice(i * 20, 20), data / f"part-{i:02d}.parquet")
    return data


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_sigkills_rerun_to_the_clean_result(seed, model_dir, many_shards, tmp_path):
    config = EmbedConfig(device="cpu", batch_size=4, read_batch_size=5)
    clean = tmp_path / "clean"
    embed(model_dir, str(many_shards), clean, config)
    killed = tmp_path / "killed"
    rng = random.Random(seed)
    for _ in range(2):  # two kills in a row at random moments, then a rerun to the end
        proc = subprocess.Popen([sys.executable, "-m", "seqae.cli", "--quiet", "embed", "--model", str(model_dir),
                                 "--data", str(many_shards), "--out", str(killed), "--device", "cpu", "--batch-size",
                                 "4", "--read-batch-size", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 3.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for location in committed_outputs(killed):  # whatever counts after a kill reads whole
            pq.read_table(location.path)
    rerun = embed(model_dir, str(many_shards), killed, config)
    assert rerun.totals["rows_in"] == 600 and rerun.totals["shards"] == 30
    assert listing(killed) == listing(clean)
    for location in committed_outputs(clean):
        assert pq.read_table(killed / "embeddings" / location.name).equals(pq.read_table(location.path))


def test_a_killed_train_leaves_no_temporary_folder_after_the_next_run(sine_dir, tmp_path):
    from seqae.train import train

    stale = tmp_path / ".m.0badf00d.tmp"  # what a train killed while writing its model folder leaves
    stale.mkdir()
    (stale / "model.keras").write_bytes(b"half")
    (tmp_path / ".m.0badf00d.lock").touch()  # its writer's lock file, no longer held by anyone
    train(str(sine_dir), tmp_path / "m", model_config=ModelConfig(units=2), train_config=TrainConfig(max_epochs=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
