import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from seqae import names
from seqae.config import EmbedConfig, ExportConfig, ModelConfig
from seqae.errors import DeviceError
from seqae.export import Tolerance, export
from seqae.infer import committed_outputs, embed
from seqae.io import read_metadata
from seqae.model import load_model
from seqae.train import TrainConfig, train

pytestmark = pytest.mark.slow  # trains a model (tests/infer/conftest.py)


def iter_outputs(out):
    """The committed output files, as local paths."""
    return [Path(location.path) for location in committed_outputs(out)]


def keras_outputs(model_dir, table):
    trained = load_model(model_dir)
    seqs = table.column("values").to_pylist()
    longest = max(len(s) for s in seqs)
    values = np.zeros((len(seqs), longest, 1), np.float32)
    lengths = np.array([len(s) for s in seqs], np.int32)
    for i, s in enumerate(seqs):
        values[i, : len(s), 0] = s
    return trained.predict(values, lengths)


def test_outputs_match_keras_with_schema_metadata_and_reconciliation(model_dir, mixed_dir, tmp_path):
    data, table = mixed_dir
    report = embed(model_dir, str(data), tmp_path / "out", EmbedConfig(device="cpu", batch_size=7,
                                                                       read_batch_size=11, step_errors=True))
    totals = report.totals
    assert totals == {"shards": 3, "shards_done": 3, "shards_skipped": 0, "rows_in": 90, "rows_written": 87,
                      "rows_rejected": 3}
    out = pa.concat_tables(pq.read_table(p) for p in iter_outputs(tmp_path / "out"))
    assert out.schema.names == ["id", "label", "embedding", "recon_error", "pred_error", "length", "step_error",
                                "model_id", "model_version"]
    assert str(out.schema.field("embedding").type) == "fixed_size_list<element: float>[4]"
    rejects = pq.read_table(tmp_path / "out" / "rejects")
    assert sorted(rejects.column("reason").to_pylist()) == ["non_finite", "null_sequence", "too_short"]
    assert sorted(rejects.column("key").to_pylist()) == ["63", "67", "69"]
    keep = np.isin(table.column("id").to_numpy(), out.column("id").to_numpy())
    ref = keras_outputs(model_dir, table.filter(pa.array(keep)))
    order = np.argsort(out.column("id").to_numpy())
    emb = np.stack(out.column("embedding").to_numpy(zero_copy_only=False))[order]
    tolerance = Tolerance.of(ExportConfig())  # the parity gate's own bounds: the job serves what it passed
    assert (np.abs(emb - ref["embedding"]) <= tolerance.allowed(names.EMBEDDING, ref["embedding"])).all()
    for name in ("recon_error", "pred_error"):
        got, want = out.column(name).to_numpy()[order], ref[name]
        assert (np.abs(got - want) <= tolerance.allowed(name, want)).all(), name
    lengths = out.column("length").to_numpy()[order]
    steps = out.column("step_error").to_pylist()
    allowed = tolerance.allowed(names.STEP_ERROR, ref["step_error"])
    for row, i in enumerate(order):
        assert len(steps[i]) == lengths[row]
        want = ref["step_error"][row, : lengths[row]]
        assert (np.abs(np.asarray(steps[i]) - want) <= allowed[row, : lengths[row]]).all(), row
    meta = read_metadata(tmp_path / "out" / "embeddings" / "c.parquet")
    assert meta["rows_in"] == 30 and meta["rows_written"] == 27 and meta["rows_rejected"] == 3
    assert meta["provider"] == "CPUExecutionProvider" and meta["source"] == str(data / "c.parquet")
    model_meta = json.loads((model_dir / names.METADATA_FILE).read_text())
    assert meta["model_id"] == model_meta["model_id"]
    assert set(out.column("model_id").to_pylist()) == {model_meta["model_id"]}
    assert set(out.column("model_version").to_pylist()) == {model_meta["model_version"]}
    assert meta["onnx_sha256"] == model_meta["export"]["files"]["scorer.onnx"]["sha256"]
    state = json.loads((tmp_path / "out" / "_seqae" / "state.json").read_text())
    run = json.loads((tmp_path / "out" / "_seqae" / state["last_run"]).read_text())
    assert run["totals"] == totals
    assert state["totals"] == {"shards": 3, "shards_committed": 3, "shards_quarantined": 0, "rows_in": 90,
                               "rows_written": 87, "rows_rejected": 3, "rows_quarantined": 0, "steps_written": 0}


def test_rerun_skips_done_shards_and_redoes_changed_ones(model_dir, mixed_dir, tmp_path):
    data, table = mixed_dir
    out = tmp_path / "out"
    embed(model_dir, str(data), out, EmbedConfig(device="cpu"))
    before = {p.name: p.stat().st_mtime_ns for p in iter_outputs(out)}
    again = embed(model_dir, str(data), out, EmbedConfig(device="cpu"))
    assert again.totals["shards_skipped"] == 3 and again.totals["rows_in"] == 90
    assert {p.name: p.stat().st_mtime_ns for p in iter_outputs(out)} == before
    pq.write_table(table.slice(30, 10), data / "b.parquet")  # b changes: only b is redone
    changed = embed(model_dir, str(data), out, EmbedConfig(device="cpu"))
    assert [s.status for s in changed.shards] == ["skipped", "done", "skipped"]
    assert pq.read_metadata(out / "embeddings" / "b.parquet").num_rows == 10
    forced = embed(model_dir, str(data), out, EmbedConfig(device="cpu", overwrite=True))
    assert forced.totals["shards_done"] == 3


def test_sigkill_then_rerun_equals_a_clean_run(model_dir, tmp_path, make_sine_table):
    table = make_sine_table(n=800, length=12, seed=9)
    data = tmp_path / "in"
    data.mkdir()
    for i in range(40):
        pq.write_table(table.slice(i * 20, 20), data / f"part-{i:02d}.parquet")
    clean = tmp_path / "clean"
    embed(model_dir, str(data), clean, EmbedConfig(device="cpu", batch_size=4, read_batch_size=5))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "seqae.cli", "--quiet", "embed", "--model", str(model_dir),
                             "--data", str(data), "--out", str(killed), "--device", "cpu", "--batch-size", "4",
                             "--read-batch-size", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed / "_seqae" / "manifest").glob("*.json")):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list((killed / "_seqae" / "manifest").glob("*.json")))
    assert 0 < done_at_kill < 40, "the kill should land mid-run"
    # whatever is visible after the kill is complete: every visible output file reads whole
    for path in iter_outputs(killed):
        pq.read_table(path)
    rerun = embed(model_dir, str(data), killed, EmbedConfig(device="cpu", batch_size=4, read_batch_size=5))
    assert rerun.totals["shards_skipped"] == done_at_kill  # every committed shard is kept, none redone
    listing = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*")  # noqa: E731
                               if p.is_file() and p.parent.name != "runs" and p.name != "state.json")
    assert listing(killed) == listing(clean)
    for path in iter_outputs(clean):
        assert pq.read_table(killed / "embeddings" / path.name).equals(pq.read_table(path))


def test_device_cuda_without_cuda_fails_with_the_message(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    with pytest.raises(DeviceError, match=r"^--device cuda: onnxruntime's CUDA provider is not usable here"):
        embed(model_dir, str(data), tmp_path / "out", EmbedConfig(device="cuda"))
    assert not (tmp_path / "out").exists()


def test_downstream_queries_with_duckdb_and_polars(model_dir, mixed_dir, tmp_path):
    import duckdb
    import polars as pl

    data, _ = mixed_dir
    out = tmp_path / "out"
    embed(model_dir, str(data), out, EmbedConfig(device="cpu"))
    glob = f"{out}/embeddings/*.parquet"
    top = duckdb.sql(f"""
        SELECT label, id, recon_error FROM read_parquet('{glob}')
        QUALIFY row_number() OVER (PARTITION BY label ORDER BY recon_error DESC) <= 3
        ORDER BY label, recon_error DESC""").fetchall()
    assert len(top) == 3 and top[0][2] >= top[1][2] >= top[2][2]
    frame = pl.read_parquet(glob)
    assert frame.height == 87 and frame.schema["embedding"] == pl.Array(pl.Float32, 4)
    query = frame.filter(pl.col("id") == 0).select("embedding").item().to_numpy()
    neighbours = duckdb.sql(f"""
        SELECT id, array_distance(embedding::FLOAT[4], {list(map(float, query))}::FLOAT[4]) AS d
        FROM read_parquet('{glob}') ORDER BY d LIMIT 3""").fetchall()
    assert neighbours[0][0] == 0 and neighbours[0][1] == pytest.approx(0.0, abs=1e-6)


def test_heavy_nodes_off_the_gpu_are_found_in_a_profile():
    from seqae.infer.runtime import heavy_nodes_off

    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {"cat": "Node", "name": "LSTM__12_kernel_time", "args": {"op_name": "LSTM", "provider": "CPUExecutionProvider"}},
        {"cat": "Node", "name": "MatMul__3_kernel_time", "args": {"op_name": "MatMul", "provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "Shape__1_kernel_time", "args": {"op_name": "Shape", "provider": "CPUExecutionProvider"}},
    ]
    assert heavy_nodes_off(events, "CUDAExecutionProvider") == ["LSTM LSTM__12 on CPUExecutionProvider"]


def test_fp16_on_the_cpu_is_refused_before_any_work():
    from seqae.config import SessionOptions
    from seqae.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^fp16: the fp16 scorer runs on CUDA only"):
        SessionOptions(device="cpu", fp16=True)


@pytest.mark.gpu
def test_cuda_session_matches_cpu(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    cpu = embed(model_dir, str(data), tmp_path / "cpu", EmbedConfig(device="cpu"))
    gpu = embed(model_dir, str(data), tmp_path / "gpu", EmbedConfig(device="cuda"))
    assert gpu.provider == "CUDAExecutionProvider" and cpu.totals == gpu.totals
    for path in iter_outputs(tmp_path / "cpu"):
        a, b = pq.read_table(path), pq.read_table(tmp_path / "gpu" / "embeddings" / path.name)
        np.testing.assert_allclose(np.stack(a.column("embedding").to_numpy(zero_copy_only=False)),
                                   np.stack(b.column("embedding").to_numpy(zero_copy_only=False)), atol=1e-4)


def test_long_layout_end_to_end_keys_are_windows(tmp_path):
    from seqae.data import DataConfig

    rng = np.random.default_rng(0)
    steps = 60
    table = pa.table({
        "sensor": np.repeat(["a", "b"], steps), "ts": np.tile(np.arange(steps, dtype=np.int64) * 10, 2),
        "x": rng.normal(size=2 * steps).astype(np.float32), "y": rng.normal(size=2 * steps).astype(np.float32),
    })
    data = tmp_path / "long"
    data.mkdir()
    pq.write_table(table, data / "s.parquet")
    config = DataConfig(layout="long", key_column="sensor", time_column="ts", feature_columns=("x", "y"),
                        window=20, stride=10)
    train(str(data), tmp_path / "m", model_config=ModelConfig(units=2), data_config=config,
          train_config=TrainConfig(max_epochs=1, validation_fraction=0.0))
    export(tmp_path / "m")
    report = embed(tmp_path / "m", str(data), tmp_path / "out", EmbedConfig(device="cpu"))
    out = pq.read_table(tmp_path / "out" / "embeddings" / "s.parquet")
    assert out.schema.names[:3] == ["sensor", "window_start", "window_end"]
    assert out.schema.field("window_start").type == pa.int64()
    assert out.num_rows == 2 * 5 == report.totals["rows_written"]
    assert out.slice(0, 2).select(["sensor", "window_start", "window_end"]).to_pylist() == [
        {"sensor": "a", "window_start": 0, "window_end": 190}, {"sensor": "a", "window_start": 100, "window_end": 290}]

    # Per-timestamp scores: asked for now, so the committed shard is recomputed (not skipped) and
    # each step gets the mean and max of the step errors of the windows covering it.
    again = embed(tmp_path / "m", str(data), tmp_path / "out",
                  EmbedConfig(device="cpu", step_errors=True, step_scores=True, read_batch_size=7))
    assert again.totals["shards_done"] == 1
    steps = pq.read_table(tmp_path / "out" / "steps" / "s.parquet")
    assert steps.schema.names == ["sensor", "ts", "step_error_mean", "step_error_max", "windows",
                                  "window_error_mean", "window_error_min", "window_distance_min", "model_id",
                                  "model_version"]
    assert steps.num_rows == 2 * steps_per_series(steps, "a") == 120
    assert steps.column("windows").to_pylist()[:60] == [1] * 10 + [2] * 40 + [1] * 10
    windows = pq.read_table(tmp_path / "out" / "embeddings" / "s.parquet").filter(pc.equal(pc.field("sensor"), "b"))
    step_errors = np.array(windows.column("step_error").to_pylist())  # (5 windows, 20 steps)
    ts_b = steps.filter(pc.equal(pc.field("sensor"), "b"))
    at_150 = [step_errors[w, 15 - 10 * w] for w in range(5) if 0 <= 15 - 10 * w < 20]  # windows starting 100, 50...
    row = ts_b.filter(pc.equal(pc.field("ts"), 150)).to_pylist()[0]
    assert row["windows"] == len(at_150) == 2
    assert row["step_error_mean"] == pytest.approx(np.mean(at_150), rel=1e-5)
    assert row["step_error_max"] == pytest.approx(max(at_150), rel=1e-6)
    covering = [windows.column("recon_error")[w].as_py() for w in range(5) if 0 <= 15 - 10 * w < 20]
    assert row["window_error_min"] == pytest.approx(min(covering), rel=1e-6)
    nearest = [windows.column("nearest_distance")[w].as_py() for w in range(5) if 0 <= 15 - 10 * w < 20]
    assert row["window_distance_min"] == pytest.approx(min(nearest), rel=1e-6)
    assert row["window_error_mean"] == pytest.approx(np.mean(covering), rel=1e-5)
    entry = json.loads((tmp_path / "out" / "_seqae" / "manifest" / "s.parquet.json").read_text())
    assert entry["step_scores"] is True and entry["steps_written"] == 120 and entry["steps_unscored"] == 0
    assert entry["steps_uncovered"] == 0
    # A rerun skips; so does one that does not ask for the steps (what it asks for is all there), but
    # a lost steps file makes the shard count as not done.
    assert embed(tmp_path / "m", str(data), tmp_path / "out",
                 EmbedConfig(device="cpu", step_errors=True, step_scores=True)).totals["shards_skipped"] == 1
    assert embed(tmp_path / "m", str(data), tmp_path / "out",
                 EmbedConfig(device="cpu", step_errors=True)).totals["shards_skipped"] == 1
    (tmp_path / "out" / "steps" / "s.parquet").unlink()
    assert embed(tmp_path / "m", str(data), tmp_path / "out",
                 EmbedConfig(device="cpu", step_errors=True, step_scores=True)).totals["shards_done"] == 1
    # Step rows written before window_error_min (an entry without steps_format) are computed again, so a
    # folder never holds step files of two formats.
    manifest = tmp_path / "out" / "_seqae" / "manifest" / "s.parquet.json"
    assert json.loads(manifest.read_text())["steps_format"] == 2
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "steps_format"}))
    assert embed(tmp_path / "m", str(data), tmp_path / "out",
                 EmbedConfig(device="cpu", step_errors=True, step_scores=True)).totals["shards_done"] == 1
    assert embed(tmp_path / "m", str(data), tmp_path / "out",
                 EmbedConfig(device="cpu", step_errors=True)).totals["shards_skipped"] == 1


def steps_per_series(table, key):
    return table.filter(pc.equal(pc.field("sensor"), key)).num_rows


def test_step_scores_on_a_sequence_layout_model_is_a_clear_error(model_dir, mixed_dir, tmp_path):
    from seqae.errors import ConfigError

    data, _ = mixed_dir
    with pytest.raises(ConfigError, match="step_scores: per-timestamp scores need the long layout"):
        embed(model_dir, str(data), tmp_path / "out", EmbedConfig(device="cpu", step_scores=True))
    assert not (tmp_path / "out" / "steps").exists()


def test_outputs_below_the_input_folder_are_not_read_back(model_dir, mixed_dir):
    data, _ = mixed_dir
    first = embed(model_dir, str(data), data / "scored", EmbedConfig(device="cpu"))
    again = embed(model_dir, str(data), data / "scored", EmbedConfig(device="cpu"))
    assert first.totals["shards"] == again.totals["shards"] == 3


@pytest.mark.gpu
def test_fp16_on_cuda_records_its_parity(tmp_path, sine_dir):
    train(str(sine_dir), tmp_path / "m", model_config=ModelConfig(units=4), train_config=TrainConfig(max_epochs=1))
    export(tmp_path / "m", ExportConfig(fp16=True))
    report = embed(tmp_path / "m", str(sine_dir), tmp_path / "out", EmbedConfig(device="cuda", fp16=True))
    assert report.fp16_parity["measured"] is True
    assert report.fp16_parity["embedding"]["max_abs"] < 1e-2


def test_fp16_parity_step_runs_up_to_the_gpu_here(model_dir, mixed_dir, tmp_path):
    """The fp16 run's parity step, reached only on CUDA, failed there on its first step (it opened the
    model from a ``Location``, which ``ModelInfo.read`` refused): run it here, where it stops at the
    missing GPU."""
    import shutil

    from seqae.data import resolve_shards
    from seqae.infer.job import _fp16_check
    from seqae.infer.model import InferenceModel

    data, _ = mixed_dir
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    export(copy, ExportConfig(fp16=True))
    model = InferenceModel.open(copy, EmbedConfig(device="cpu"))
    assert model.info.location is not None
    result = _fp16_check(model, resolve_shards(str(data)))
    assert result == {"measured": False, "reason": result["reason"]}
    assert "no usable CUDA provider" in result["reason"]


def committed_accounts(out):
    """Every committed entry against its files: data rows == rows_written, rejects rows == rows_rejected
    (no rejects file when none); returns {source: rows_in}."""
    from seqae.infer.commit import OutputFolder

    folder, found = OutputFolder(out), {}
    for name in folder.entry_names():
        entry = folder.read_entry(name)
        data = folder.data_file(name)
        assert pq.read_metadata(data.path).num_rows == entry["rows_written"], name
        rejects = folder.rejects_file(name)
        rejected = pq.read_metadata(rejects.path).num_rows if rejects.is_file() else 0
        assert rejected == entry["rows_rejected"], name
        assert entry["rows_in"] == entry["rows_written"] + entry["rows_rejected"]
        found[entry["source"]] = entry["rows_in"]
    return found


def test_a_kill_during_a_recompute_leaves_no_stale_file_under_the_older_entry(model_dir, mixed_dir, tmp_path,
                                                                              monkeypatch):
    import dataclasses

    from seqae.infer import InferenceModel
    from seqae.infer.commit import OutputFolder

    data, _ = mixed_dir
    out = tmp_path / "out"
    cpu = EmbedConfig(device="cpu", workers=1)
    embed(model_dir, str(data), out, cpu)
    stricter = dataclasses.replace(InferenceModel.open(model_dir, cpu).data, max_length=8)
    real = OutputFolder.commit

    def killed(self, name, record):
        if name == "c.parquet":
            raise KeyboardInterrupt  # the recompute of c dies after its files, before its entry
        real(self, name, record)

    monkeypatch.setattr(OutputFolder, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        embed(model_dir, str(data), out, cpu, data_config=stricter)
    monkeypatch.setattr(OutputFolder, "commit", real)
    assert "c.parquet" not in OutputFolder(out).entry_names()  # withdrawn before anything was written
    committed_accounts(out)
    rerun = embed(model_dir, str(data), out, cpu)  # the older config: c is redone, not skipped over a stale file
    assert committed_accounts(out) == {str(data / n): 30 for n in ("a.parquet", "b.parquet", "c.parquet")}
    assert rerun.totals["rows_in"] == 90 and rerun.totals["rows_rejected"] == 3


def test_shards_are_checked_against_the_contract_never_against_each_other(model_dir, mixed_dir, tmp_path):
    """A stray file that sorts first (an extra column) quarantines nothing; shards written by pandas
    and Polars beside pyarrow ones share the output schema."""
    import polars as pl

    data, table = mixed_dir
    pq.write_table(table.slice(0, 5).append_column("note", pa.array(["x"] * 5)), data / "0-stray.parquet")
    # what pandas writes (pandas is not installed here): its metadata and its own field flags
    pandas_like = table.slice(0, 10)
    pandas_like = pandas_like.cast(pa.schema([pa.field(f.name, f.type, nullable=f.name != "id") for f in table.schema],
                                             metadata={b"pandas": b'{"index_columns": []}'}))
    pq.write_table(pandas_like, data / "p-pandas.parquet")
    pl.from_arrow(table.slice(10, 10)).write_parquet(data / "p-polars.parquet")
    report = embed(model_dir, str(data), tmp_path / "out", EmbedConfig(device="cpu"))
    assert report.quarantined == [] and report.totals["shards_done"] == 6
    schemas = {p.name: pq.read_schema(p) for p in iter_outputs(tmp_path / "out")}
    clean = {n: s.remove_metadata() for n, s in schemas.items() if n != "0-stray.parquet"}
    assert len({str(s) for s in clean.values()}) == 1, clean
    assert b"pandas" not in (schemas["p-pandas.parquet"].metadata or {})


def test_a_new_optional_column_is_one_entry_of_the_output_table(model_dir, mixed_dir, tmp_path, monkeypatch):
    """What docs/architecture.md promises: an ``OutputColumn`` asked for by a boolean ``EmbedConfig``
    option is the whole change. The session is asked for the output it needs, the files carry it, and
    the run identity records the option, so that switching it recomputes the shards. ``fail_fast``
    stands in for the new option: it changes nothing else on this data."""
    from seqae import io
    from seqae.infer import InferenceModel

    extra = io.OutputColumn("step_error_max", pa.float32(), "fail_fast",
                            lambda values, field: pa.array(values[names.STEP_ERROR].max(axis=1).astype(np.float32)),
                            needs=names.STEP_ERROR)
    monkeypatch.setattr(io, "OUTPUT_COLUMNS", (*io.OUTPUT_COLUMNS, extra))
    data, _ = mixed_dir
    out = tmp_path / "out"
    asked = EmbedConfig(device="cpu", fail_fast=True)
    model = InferenceModel.open(model_dir, asked)
    assert model.scorer.output_names == ["embedding", "recon_error", "pred_error", "step_error"]  # for the new column
    assert model.identity.to_dict()["options"] == ["fail_fast"]
    assert InferenceModel.identity_of(model_dir, asked) == model.identity
    assert embed(model_dir, str(data), out, asked).totals["shards_done"] == 3
    with_max = pa.concat_tables(pq.read_table(p) for p in iter_outputs(out))
    assert with_max.schema.names[-3:] == ["model_id", "model_version", "step_error_max"]
    assert "step_error" not in with_max.schema.names
    assert embed(model_dir, str(data), out, asked).totals["shards_skipped"] == 3
    assert embed(model_dir, str(data), out, EmbedConfig(device="cpu")).totals["shards_done"] == 3  # switched off
    assert "step_error_max" not in pq.read_schema(iter_outputs(out)[0]).names
    assert embed(model_dir, str(data), out, EmbedConfig(device="cpu", step_errors=True)).totals["shards_done"] == 3
    with_steps = pa.concat_tables(pq.read_table(p) for p in iter_outputs(out))
    assert "step_error_max" not in with_steps.schema.names
    maxima = dict(zip(with_max.column("id").to_pylist(), with_max.column("step_error_max").to_pylist()))
    for key, steps in zip(with_steps.column("id").to_pylist(), with_steps.column("step_error").to_pylist()):
        assert maxima[key] == pytest.approx(max(steps), rel=1e-6)
    assert "options" not in InferenceModel.identity_of(model_dir, EmbedConfig()).to_dict()  # entries as before
