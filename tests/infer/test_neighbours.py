"""A long-layout model with its bank of training windows (``neighbours.onnx``): export writes it,
the job scores every window by its nearest-window distance and every step by the least of them, and
the step threshold fitted on held-out distances keeps its rate on normal data it never saw."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.config import DataConfig, EmbedConfig, ExportConfig, ModelConfig, ThresholdConfig, TrainConfig
from seqae.errors import ModelDirError

WINDOW, STRIDE, PERIOD = 16, 4, 20


def normal_series(folder, seed: int, series: int = 8, steps: int = 2000):
    """``series`` noisy sines of one period, each with its own phase: normal data, one shard."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    t = np.arange(steps)
    keys, times, x = [], [], []
    for i in range(series):
        keys += [f"{seed}-{i}"] * steps
        times.append(t)
        x.append(np.sin(2 * np.pi * t / PERIOD + rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.1, steps))
    pq.write_table(pa.table({"s": keys, "t": np.concatenate(times), "x": np.concatenate(x).astype(np.float32)}),
                   folder / "part.parquet")
    return str(folder)


@pytest.fixture(scope="module")
def banked(tmp_path_factory):
    from seqae.anomaly import fit_threshold
    from seqae.export import export
    from seqae.train import train

    root = tmp_path_factory.mktemp("neighbours")
    data = DataConfig(layout="long", key_column="s", time_column="t", feature_columns=("x",), window=WINDOW,
                      stride=STRIDE)
    train(normal_series(root / "train", 0), root / "m", model_config=ModelConfig(units=4), data_config=data,
          train_config=TrainConfig(max_epochs=1))
    exported = export(root / "m")
    threshold = fit_threshold(root / "m", ThresholdConfig(method="percentile", false_alarm_rate=0.05))
    return root, exported, threshold


def test_export_writes_the_bank_with_its_parity_checksum_and_the_step_thresholds_data(banked):
    from seqae.anomaly import read_neighbours_reference
    from seqae.infer.artifacts import ModelArtifacts

    root, exported, threshold = banked
    record = exported.record["neighbours"]
    # every full window of the training data at stride 1: 8 series of 2000 steps
    assert record["bank_stride"] == 1 and record["bank_windows"] == record["windows_read"] == 8 * (2000 - WINDOW + 1)
    assert record["parity"]["passed"] and record["parity"]["max_abs"] < 1e-5 and record["parity"]["rows"] > 100
    assert exported.files["neighbours.onnx"]["graph"] == "neighbours"
    ModelArtifacts.open(root / "m", ("neighbours.onnx",))  # its sha256 checks
    # the step threshold's data: every STRIDE-th window of each series against the bank without the ones
    # overlapping it, a NaN between series
    own, stride = read_neighbours_reference(root / "m")
    per_series = (2000 - WINDOW) // STRIDE + 1
    assert stride == STRIDE and len(own) == 8 * per_series + 7 and record["reference"]["windows"] == 8 * per_series
    assert np.isnan(own).sum() == 7 and np.nanmin(own) > 1e-4  # never its own window
    assert threshold.statistic_ == "window_distance_min" and threshold.covering_ == (WINDOW // STRIDE,)
    assert threshold.steps_.n_samples_ == 8 * (per_series - WINDOW // STRIDE + 1)  # no run across two series
    assert record["parity"]["passed"] and record["parity"]["max_rel"] < 1e-3


def test_the_step_threshold_on_distances_holds_its_rate_on_normal_series_it_never_saw(banked):
    """Asked 5% (fitted on the held-out reference), the share of new normal steps flagged is within 2x."""
    from seqae.infer import embed

    root, _, threshold = banked
    fresh = normal_series(root / "fresh", 7, series=6)
    embed(root / "m", fresh, root / "out", EmbedConfig(device="cpu", step_scores=True))
    steps = pq.read_table(root / "out" / "steps" / "part.parquet")
    windows = pq.read_table(root / "out" / "embeddings" / "part.parquet")
    assert {"window_distance_min", "window_error_min", "score", "is_anomaly"} <= set(steps.column_names)
    assert "nearest_distance" in windows.column_names
    flagged = steps.column("is_anomaly").to_numpy(zero_copy_only=False)
    assert 0.025 <= flagged.mean() <= 0.10, flagged.mean()
    # the flag is the step threshold on window_distance_min, partly covered steps on their own run's
    adjusted = threshold.adjust_steps(steps.column("window_distance_min").to_numpy(), steps.column("windows").to_numpy())
    assert flagged.tolist() == (adjusted > threshold.steps_.threshold_).tolist()
    # each step's window_distance_min is the least nearest_distance of the windows covering it
    first = windows.filter(pa.compute.equal(windows.column("s"), "7-0"))
    start = first.column("window_start").to_numpy()
    near = first.column("nearest_distance").to_numpy()
    step_rows = steps.filter(pa.compute.equal(steps.column("s"), "7-0"))
    for t, value in list(zip(step_rows.column("t").to_numpy(), step_rows.column("window_distance_min").to_numpy()))[::97]:
        covering = (start <= t) & (t < start + WINDOW)
        assert value == pytest.approx(near[covering].min(), rel=1e-6)


def test_a_run_without_the_bank_is_computed_again_and_an_orphaned_step_threshold_refused(banked, tmp_path):
    """Re-exported without the bank, the file is removed, an earlier output is not reused (its rows hold
    nearest_distance), and the step threshold fitted on distances is refused in one line."""
    import shutil

    from seqae.export import export
    from seqae.infer import embed
    from seqae.infer.model import InferenceModel

    root, _, _ = banked
    model = tmp_path / "m"
    shutil.copytree(root / "m", model)
    first = embed(model, str(root / "train"), tmp_path / "out", EmbedConfig(device="cpu"))
    assert [r.status for r in first.shards] == ["done"]
    again = embed(model, str(root / "train"), tmp_path / "out", EmbedConfig(device="cpu"))
    assert [r.status for r in again.shards] == ["skipped"]
    export(model, ExportConfig(neighbours=False))
    assert not (model / "neighbours.onnx").exists() and not (model / "neighbours.parquet").exists()
    assert "neighbours.onnx" not in json.loads((model / "seqae.json").read_text())["export"]["files"]
    with pytest.raises(ModelDirError, match="fitted on window_distance_min.*re-run seqae threshold"):
        InferenceModel.open(model, EmbedConfig(device="cpu", step_scores=True))
    rerun = embed(model, str(root / "train"), tmp_path / "out", EmbedConfig(device="cpu"))
    assert [r.status for r in rerun.shards] == ["done"]
    assert "nearest_distance" not in pq.read_table(tmp_path / "out" / "embeddings" / "part.parquet").column_names


def test_training_data_is_refused_and_an_old_threshold_keeps_its_error_statistic(banked, tmp_path, caplog):
    """``--data`` of the training data is refused (its windows are the bank); a threshold without a
    step threshold (written before them) is read against window_error_min, in its units, with a
    warning to refit, never against the distances."""
    import shutil

    from seqae.anomaly import fit_threshold
    from seqae.errors import SeqaeError
    from seqae.infer import embed
    from seqae.thresholds import Threshold, canonical_sha256

    root, _, _ = banked
    model = tmp_path / "m"
    shutil.copytree(root / "m", model)
    with pytest.raises(SeqaeError, match="a shard the model trained on"):
        fit_threshold(model, data=str(root / "train"), device="cpu")
    body = json.loads((model / "threshold.json").read_text())
    for key in ("steps", "sha256"):
        body.pop(key)
    (model / "threshold.json").write_text(json.dumps({**body, "sha256": canonical_sha256(body)}))
    old = Threshold.load(model)
    assert old.steps_ is None
    embed(model, normal_series(tmp_path / "fresh", 9, series=2), tmp_path / "out",
          EmbedConfig(device="cpu", step_scores=True))
    assert "not by the bank's window_distance_min" in caplog.text
    steps = pq.read_table(tmp_path / "out" / "steps" / "part.parquet")
    flagged = steps.column("is_anomaly").to_numpy(zero_copy_only=False)
    assert flagged.tolist() == (steps.column("window_error_min").to_numpy() > old.threshold_).tolist()
