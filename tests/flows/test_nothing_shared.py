"""Issue #26 item 3: the retrain and embed flows with nothing shared but the bucket. A worker process
whose working folder and home are empty folders (and whose scratch space is its own, as a pod's
emptyDir) trains, exports, fits the threshold, promotes into the registry on S3, embeds with the
promoted model and keeps the drift state on S3; afterwards its folders hold nothing of the data, the
models or the outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq
import pytest

from seqae import names
from seqae.drift import read_state
from seqae.infer import committed_outputs
from seqae.registry import ModelRegistry
from seqae.storage import Location
from tests.test_object_store_lifecycle import keys

pytestmark = pytest.mark.slow  # trains the tiny model in another process

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: What a model directory, an output folder or a data shard is made of, whatever its name.
SUFFIXES = (".parquet", ".onnx", ".keras", ".npz", ".png")


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def worker_env(s3, home: Path, scratch: Path) -> dict[str, str]:
    """Only what a pod gets: the code (PYTHONPATH), the Prefect API, the store's endpoint and
    credentials, an empty home and its own scratch space."""
    from prefect.settings import get_current_settings

    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(home), "TMPDIR": str(scratch),
            "SEQAE_CACHE_DIR": str(scratch / "cache"), "PREFECT_API_URL": str(get_current_settings().api.url),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
            "AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": s3.secret, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": s3.endpoint}


def test_retrain_and_embed_in_a_worker_that_shares_nothing_but_the_bucket(prefect_harness, s3, make_sine_table,
                                                                           tmp_path):
    bucket = f"s3://{s3.bucket}"
    data, models, out = f"{bucket}/data", f"{bucket}/models", f"{bucket}/out"
    table = make_sine_table(n=120, length=12, seed=2)
    for i in range(3):  # written from memory straight to the bucket: no local copy anywhere
        shard = Location.of(f"{data}/part-{i}.parquet")
        pq.write_table(table.slice(i * 40, 40), shard.path, filesystem=shard.filesystem)
    work, home, scratch = tmp_path / "work", tmp_path / "home", tmp_path / "scratch"
    for folder in (work, home, scratch):
        folder.mkdir()

    run = subprocess.run([sys.executable, str(HERE / "nothing_shared.py"), data, models, out], cwd=work,
                         env=worker_env(s3, home, scratch), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert s3.secret not in run.stdout + run.stderr

    # The registry, the promoted snapshot, the staging directory of the run, all on S3.
    registry = ModelRegistry(models)
    current = registry.current("ecg")
    promotion = result["promotion"]
    assert (current.model_id, current.model_version, current.location) == (
        promotion["model_id"], 1, promotion["location"])
    assert current.location.startswith(f"{models}/ecg/versions/{current.model_id}-")
    stored = keys(f"{models}/ecg")
    staged = {PurePosixPath(k).name for k in stored if k.startswith("staging/")}
    assert {names.METADATA_FILE, names.MODEL_FILE, names.SCORER_ONNX, names.ENCODER_ONNX} <= staged
    assert "history/1.json" in stored and "current.json" in stored

    # The outputs, committed on S3 with the promoted model; the drift state beside the registry.
    summary = result["embed"]
    assert summary["totals"] == {"shards": 3, "shards_done": 3, "shards_skipped": 0, "rows_in": 120,
                                 "rows_written": 120, "rows_rejected": 0}
    assert summary["model_id"] == current.model_id
    assert [loc.name for loc in committed_outputs(out)] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    state = read_state(models, "ecg")
    assert "drift.json" in stored and state.pending == [] and len(state.seen) == 3
    assert state.last_check["verdict"] == summary["drift"]["verdict"] != "too few rows"

    # Nothing of it on the worker's disk: its working folder and home hold no file the bucket holds,
    # no data, model or output file; in its scratch space, the staging folders of train and export
    # are gone, and model files are left only in the cache (content-addressed copies, $SEQAE_CACHE_DIR).
    in_bucket = {PurePosixPath(k).name for k in keys(bucket)}
    for folder in (work, home):
        for path in files(folder):
            assert path.name not in in_bucket and not path.name.endswith(SUFFIXES), path
            with open(path, "rb") as handle:
                assert handle.read(4) != b"PAR1", path
    assert files(work) == []
    scratched = [p.relative_to(scratch) for p in files(scratch)]
    assert any(p.parts[0] == "cache" and p.name == names.MODEL_FILE for p in scratched)  # export read it there
    left = [p for p in scratched if p.parts[0] != "cache" and (p.parts[0].startswith("seqae-")
                                                                or p.name.endswith(SUFFIXES))]
    assert left == [], left
