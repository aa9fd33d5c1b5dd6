"""Whole flows under prefect_test_harness, on tiny models."""

import json

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


def test_embed_flow_skips_done_shards_and_fails_only_the_bad_one(prefect_harness, model_dir, mixed_dir, tmp_path):
    from flows.definitions import embed

    data, _ = mixed_dir
    out = tmp_path / "out"
    first = embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu"))
    assert first["totals"]["shards_done"] == 3
    pq.write_table(pa.table({"id": [1], "values": [["x"]]}), data / "d.parquet")  # off contract
    with pytest.raises(RuntimeError, match=r"1 of 4 shard\(s\) failed .*d.parquet: ContractError"):
        embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu"))
    assert [loc.name for loc in committed_outputs(out)] == ["a.parquet", "b.parquet", "c.parquet"]
    summary = json.loads((out / "_manifest.json").read_text())
    assert summary["totals"]["shards_skipped"] == 3 and summary["totals"]["rows_in"] == 90


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
