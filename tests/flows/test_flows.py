"""Whole flows under prefect_test_harness, on tiny models."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.config import EmbedConfig, ModelConfig, TrainConfig
from seqae.infer import committed_outputs
from seqae.registry import ModelRegistry

pytestmark = pytest.mark.slow


def test_pipeline_trains_promotes_embeds_and_evaluates(prefect_harness, make_sine_table, tmp_path):
    from flows.definitions import pipeline

    table = make_sine_table(n=120, length=12, seed=1)
    labels = pa.array([1] * 100 + [2] * 20, pa.int32())
    table = table.set_column(1, "label", labels)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        pq.write_table(table.slice(i * 40, 40), data / f"p{i}.parquet")
    result = pipeline(str(data), str(tmp_path / "models"), str(tmp_path / "out"), "sine",
                      model=ModelConfig(units=4), train=TrainConfig(max_epochs=2, row_filter="label == 1"),
                      embed_config=EmbedConfig(device="cpu"))
    assert result["embed"] == {"shards": 3, "shards_done": 3, "shards_skipped": 0, "rows_in": 120,
                               "rows_written": 120, "rows_rejected": 0}
    assert result["evaluation"]["rows"] == 120 and result["evaluation"]["anomalous"] == 20
    current = ModelRegistry(tmp_path / "models").current("sine")
    assert current.model_id == result["promotion"]["model_id"]
    summary = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert summary["model_id"] == current.model_id and summary["totals"]["rows_in"] == 120


def test_embed_flow_skips_done_shards_and_quarantines_the_bad_one(prefect_harness, model_dir, mixed_dir, tmp_path):
    from flows.definitions import embed

    data, _ = mixed_dir
    out = tmp_path / "out"
    first = embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu"))
    assert first["totals"]["shards_done"] == 3
    pq.write_table(pa.table({"id": [1], "values": [["x"]]}), data / "d.parquet")  # off contract
    second = embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu"))
    assert [loc.name for loc in committed_outputs(out)] == ["a.parquet", "b.parquet", "c.parquet"]
    assert (out / "_rejects" / "_files" / "d.parquet.json").is_file()
    summary = json.loads((out / "_manifest.json").read_text())
    assert summary["totals"] == second["totals"] == {
        "shards": 4, "shards_done": 0, "shards_skipped": 3, "rows_in": 91, "rows_written": 87, "rows_rejected": 3,
        "shards_quarantined": 1, "rows_quarantined": 1}
    with pytest.raises(RuntimeError, match=r"1 of 4 shard\(s\) failed .*d.parquet: ContractError"):
        embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu", fail_fast=True))


def folder_state(out):
    """What a reader sees in an output folder: committed outputs with their rows, rejects, quarantine
    records (no timestamps)."""
    out = Path(out)
    state = {loc.name: pq.read_table(loc.path).to_pylist() for loc in committed_outputs(out)}
    for path in sorted((out / "_rejects").rglob("*")) if (out / "_rejects").exists() else []:
        if path.suffix == ".parquet":
            state[f"rejects/{path.name}"] = pq.read_table(path).to_pylist()
        elif path.suffix == ".json":
            record = json.loads(path.read_text())
            state[f"quarantined/{path.name}"] = (record["shard"], record["rows"])
    state["listing"] = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                              if p.is_file() and p.name not in ("_manifest.json", ".seqae.lock"))
    return state


def rows(totals):
    return {k: v for k, v in totals.items() if k.startswith(("rows", "shards_quarantined")) or k == "shards"}


def test_the_flow_and_embed_leave_identical_folders(prefect_harness, model_dir, make_sine_table, tmp_path):
    """Arrivals, a name collision that renames an output, an `only` run, a deletion: embed() and the
    flow plan, withdraw and commit through the same library code."""
    from flows.definitions import embed as embed_flow
    from seqae.infer import embed as embed_library

    table = make_sine_table(n=60, length=12, seed=4)
    data = tmp_path / "data"
    data.mkdir()
    cpu = EmbedConfig(device="cpu")

    def both(only=None):
        flow = embed_flow(str(data), str(tmp_path / "flow"), model_dir=str(model_dir), config=cpu, only=only,
                          drift_alpha=None)
        library = embed_library(model_dir, str(data), tmp_path / "lib", cpu)
        return flow, library

    pq.write_table(table.slice(0, 20), data / "x.parquet")
    both()
    pq.write_table(table.slice(20, 20), data / "x.pq")  # collides with x.parquet: both get hashed names
    both(only=str(data / "x.pq"))
    flow, library = both()
    assert rows(flow["totals"]) == rows(library.totals) and flow["totals"]["rows_in"] == 40
    assert folder_state(tmp_path / "flow") == folder_state(tmp_path / "lib")
    assert len(committed_outputs(tmp_path / "flow")) == 2
    (data / "x.parquet").unlink()
    pq.write_table(pa.table({"id": [1], "values": [["x"]]}), data / "y.parquet")  # quarantined on both paths
    flow, library = both()
    assert rows(flow["totals"]) == rows(library.totals) and flow["totals"]["rows_quarantined"] == 1
    assert folder_state(tmp_path / "flow") == folder_state(tmp_path / "lib")
    assert [loc.name for loc in committed_outputs(tmp_path / "flow")] == ["x.parquet"]
    with pytest.raises(ValueError, match=r"^only: expected one Parquet file of"):
        embed_flow(str(data), str(tmp_path / "flow"), model_dir=str(model_dir), config=cpu, only=str(data))


def test_embed_flow_without_a_model_says_what_to_give(prefect_harness, mixed_dir, tmp_path):
    from flows.definitions import embed

    data, _ = mixed_dir
    with pytest.raises(ValueError, match="give model_dir, or models_root"):
        embed(str(data), str(tmp_path / "out"))


def test_an_io_error_is_retried_and_a_lasting_one_fails_that_shard_only(prefect_harness, model_dir, mixed_dir,
                                                                         tmp_path, monkeypatch):
    import flows.tasks as tasks
    from flows.definitions import embed

    data, _ = mixed_dir
    real = tasks.embed_shard
    calls = {"a.parquet": 0, "b.parquet": 0}

    def flaky(model, shard, out, config, output_name):
        if output_name in calls:
            calls[output_name] += 1
            if output_name == "b.parquet" or calls[output_name] == 1:  # a fails once, b always
                raise ConnectionResetError(f"{shard}: connection reset by peer")
        return real(model, shard, out, config, output_name=output_name)

    monkeypatch.setattr(tasks, "embed_shard", flaky)
    monkeypatch.setattr(tasks.embed_one, "retry_delay_seconds", [0, 0, 0])
    with pytest.raises(RuntimeError, match=r"1 of 3 shard\(s\) failed .*b.parquet: ConnectionResetError"):
        embed(str(data), str(tmp_path / "out"), model_dir=str(model_dir), config=EmbedConfig(device="cpu"))
    assert calls == {"a.parquet": 2, "b.parquet": 4}  # a: retried once; b: 1 + 3 retries
    assert [loc.name for loc in committed_outputs(tmp_path / "out")] == ["a.parquet", "c.parquet"]


def test_drifted_shards_emit_the_event_that_retrains(prefect_harness, model_dir, same_and_shifted, tmp_path,
                                                     monkeypatch):
    import flows.tasks as tasks
    from flows.definitions import embed

    emitted = []
    monkeypatch.setattr(tasks, "emit_event", lambda **event: emitted.append(event))
    same_and_shifted(n=120, seed=7, scale=3, offset=2)
    same = embed(str(tmp_path / "same"), str(tmp_path / "out-same"), model_dir=str(model_dir),
                 config=EmbedConfig(device="cpu"))
    assert same["drift"]["drifted"] is False and emitted == []
    moved = embed(str(tmp_path / "shifted"), str(tmp_path / "out-shifted"), model_dir=str(model_dir),
                  config=EmbedConfig(device="cpu"))
    assert moved["drift"]["drifted"] is True
    assert [e["event"] for e in emitted] == ["seqae.drift.detected"]
    assert emitted[0]["resource"]["prefect.resource.id"] == "seqae.model.default"
