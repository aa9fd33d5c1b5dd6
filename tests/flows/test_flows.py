"""Whole flows under prefect_test_harness, on tiny models."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.config import EmbedConfig, ModelConfig, TrainConfig
from seqae.infer import committed_outputs
from seqae.infer.commit import OutputFolder
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
    summary = OutputFolder(tmp_path / "out").last_run()
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
    assert (out / "_seqae" / "quarantine" / "d.parquet.json").is_file()
    summary = OutputFolder(out).last_run()
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
    for path in sorted((out / "rejects").glob("*.parquet")):
        state[f"rejects/{path.name}"] = pq.read_table(path).to_pylist()
    for path in sorted((out / "_seqae" / "quarantine").glob("*.json")):
        record = json.loads(path.read_text())
        state[f"quarantined/{path.name}"] = (record["shard"], record["rows"])
    # the run reports and the folder state record times; the lock file is the lock
    state["listing"] = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                              if p.is_file() and p.name not in ("state.json", "lock") and p.parent.name != "runs")
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
                          drift=None)
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
    from seqae.drift import DriftPolicy

    emitted = []
    monkeypatch.setattr(tasks, "emit_event", lambda **event: emitted.append(event))
    same_and_shifted(n=120, seed=7, scale=3, offset=2)
    policy = DriftPolicy(min_rows=100)
    same = embed(str(tmp_path / "same"), str(tmp_path / "out-same"), model_dir=str(model_dir),
                 config=EmbedConfig(device="cpu"), drift=policy)
    assert same["drift"]["drifted"] is False and emitted == []
    moved = embed(str(tmp_path / "shifted"), str(tmp_path / "out-shifted"), model_dir=str(model_dir),
                  config=EmbedConfig(device="cpu"), drift=policy)
    assert moved["drift"]["retrain"] is True
    assert [e["event"] for e in emitted] == ["seqae.drift.detected"]
    assert emitted[0]["resource"]["prefect.resource.id"] == "seqae.model.default"
    payload = emitted[0]["payload"]
    assert payload["verdict"] == "drift: retrain" and payload["model_id"] == moved["model_id"]
    assert any("recon_error KS statistic" in reason for reason in payload["reasons"])


def _shard(data, name, table, shifted=False):
    if shifted:
        moved = [[3 * v + 4 for v in row] for row in table.column("values").to_pylist()]
        table = table.set_column(2, "values", pa.array(moved, pa.list_(pa.float32())))
    pq.write_table(table, data / name)


def test_the_drift_storm_small_shards_retrain_never_a_shift_once(prefect_harness, model_dir, make_sine_table,
                                                                 tmp_path, monkeypatch):
    """Issue #24 item 2, through the embed flow against a registry: small normal shards (each run
    embedding one) request no retrain; a shifted shard requests one; a second shifted shard in the
    same episode requests none (its event says why not)."""
    import flows.tasks as tasks
    from flows.definitions import embed
    from seqae.drift import DriftPolicy, read_state

    emitted = []
    monkeypatch.setattr(tasks, "emit_event", lambda **event: emitted.append(event))
    data, models, out = tmp_path / "data", tmp_path / "models", tmp_path / "out"
    data.mkdir()
    ModelRegistry(models).promote(model_dir, "default")
    policy = DriftPolicy(min_rows=100, min_effect=0.3)

    def run():
        return embed(str(data), str(out), str(models), config=EmbedConfig(device="cpu"), drift=policy)

    verdicts = []
    for i in range(3):
        _shard(data, f"n{i}.parquet", make_sine_table(n=50, length=12, seed=20 + i))
        verdicts.append(run()["drift"]["verdict"])
    assert verdicts == ["too few rows", "no drift", "too few rows"] and emitted == []
    assert [p["rows"] for p in read_state(models, "default").pending] == [50]
    _shard(data, "s1.parquet", make_sine_table(n=120, length=12, seed=30), shifted=True)
    assert run()["drift"]["verdict"] == "drift: retrain"
    _shard(data, "s2.parquet", make_sine_table(n=120, length=12, seed=31), shifted=True)
    second = run()["drift"]
    assert (second["verdict"], second["retrain"]) == ("drift: no retrain", False)
    assert [e["event"] for e in emitted] == ["seqae.drift.detected", "seqae.drift.suppressed"]
    assert emitted[0]["payload"]["episode"] == emitted[1]["payload"]["episode"]
    assert "at most one retrain per episode" in " ".join(emitted[1]["payload"]["reasons"])


def _state_and_id(state):
    return state.result(), state.state_details.flow_run_id


def test_runs_with_nothing_to_do_end_completed(prefect_harness, model_dir, mixed_dir, tmp_path):
    """Issue #24 item 3: no model promoted yet, no shard yet, no new shard: Completed, nothing written."""
    from flows.definitions import embed

    data, _ = mixed_dir
    models, out = tmp_path / "models", tmp_path / "out"
    state = embed(str(data), str(out), str(models), config=EmbedConfig(device="cpu"), return_state=True)
    assert state.is_completed() and state.result() == {"status": "no model", "out": str(out)}
    assert not out.exists()
    ModelRegistry(models).promote(model_dir, "default")
    empty = tmp_path / "empty"
    empty.mkdir()
    state = embed(str(empty), str(out), str(models), config=EmbedConfig(device="cpu"), return_state=True)
    assert state.is_completed() and state.result()["status"] == "no shard"
    first = embed(str(data), str(out), str(models), config=EmbedConfig(device="cpu"), drift=None)
    assert first["totals"]["shards_done"] == 3
    state = embed(str(data), str(out), str(models), config=EmbedConfig(device="cpu"), drift=None, return_state=True)
    assert state.is_completed() and state.result()["totals"]["shards_skipped"] == 3


def test_one_embed_run_per_output_folder(prefect_harness, model_dir, mixed_dir, tmp_path):
    """Issue #24 item 3: while a run holds the folder's slot, one that will not wait ends Completed
    saying so, writing nothing; one that waits plans after the first and skips its shards."""
    import threading
    import time

    from flows.concurrency import embed_slot_name, one_at_a_time
    from flows.definitions import embed

    data, _ = mixed_dir
    out = tmp_path / "out"
    first = embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu"), drift=None)
    assert first["totals"]["shards_done"] == 3
    held, release = threading.Event(), threading.Event()

    def hold():
        with one_at_a_time(embed_slot_name(str(out)), None):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(60)
        busy = embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu"), drift=None,
                     wait_seconds=0, return_state=True)
        assert busy.is_completed() and busy.result() == {"status": "busy", "out": str(out)}
        threading.Timer(2.0, release.set).start()
        started = time.monotonic()
        waited = embed(str(data), str(out), model_dir=str(model_dir), config=EmbedConfig(device="cpu"), drift=None)
        assert time.monotonic() - started >= 1.5
        assert waited["totals"]["shards_skipped"] == 3
    finally:
        release.set()
        holder.join(60)


def test_a_retrain_that_is_no_longer_needed_ends_at_once(prefect_harness, model_dir, tmp_path):
    from flows.definitions import retrain

    models = tmp_path / "models"
    current = ModelRegistry(models).promote(model_dir, "default")
    state = retrain(str(tmp_path / "no-data"), str(models), drift_episode="e1", drift_model_id="older",
                    return_state=True)
    assert state.is_completed()
    assert state.result() == {"status": "not needed", "reason": f"model {current.model_id} was promoted after the "
                              "drift against older was found; its own drift checks decide"}
    state = retrain(str(tmp_path / "no-data"), str(models), drift_episode="e1", drift_model_id=current.model_id,
                    return_state=True)
    assert state.result()["reason"].startswith("drift episode e1 is over")


def test_the_run_a_user_opens_has_the_artifacts(prefect_harness, model_dir, same_and_shifted, tmp_path):
    """Issue #24 item 7: progress on the embed run itself, the output folder as text (no file://
    link), the drift table with its labels, one evaluation with the model id and threshold."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.definitions import embed
    from seqae.drift import DriftPolicy

    _, shifted = same_and_shifted(n=120, seed=3, scale=3, offset=2)
    models, out = tmp_path / "models", tmp_path / "out"
    promotion = ModelRegistry(models).promote(model_dir, "default")
    state = embed(str(shifted), str(out), str(models), config=EmbedConfig(device="cpu"),
                  drift=DriftPolicy(min_rows=100), label_column="label", normal_value=1, return_state=True)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    by_key = {a.key: a for a in artifacts}
    assert {"seqae-embed-progress", "seqae-embeddings", "seqae-drift", "seqae-evaluation",
            "seqae-embed-reconciliation"} <= set(by_key)
    assert by_key["seqae-embed-progress"].data == 100.0
    location = by_key["seqae-embeddings"]
    assert location.type == "markdown" and f"`{out}`" in location.data and "file://" not in location.data
    assert f"model {promotion.model_id} (promotion 1 of 'default'" in location.data
    drift = by_key["seqae-drift"].data
    assert "| compared | test |" in drift and "| recon_error | ks_2samp |" in drift
    assert "| embedding | ks_2samp per dimension, Bonferroni |" in drift
    (evaluation,) = json.loads(by_key["seqae-evaluation"].data)
    assert evaluation["model_id"] == promotion.model_id and "threshold" in evaluation and evaluation["rows"] == 120
    for artifact in artifacts:
        assert not (artifact.description or "").startswith("{"), artifact.key
