"""Tasks through ``.fn`` (no Prefect run needed) and the pieces the flows rely on."""

import json
import os
import time
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from flows.tasks import _shard_key, embed_one, plan_shards, retry_on_io_errors
from seqae.config import EmbedConfig
from seqae.errors import ContractError, InputNotFoundError
from seqae.registry import ModelRegistry, PromotionError

CPU = EmbedConfig(device="cpu")


@pytest.mark.parametrize("exc, retry", [(OSError("connection reset"), True), (TimeoutError(), True),
                                        (ContractError("x.parquet", "wrong type"), False),
                                        (InputNotFoundError("nothing"), False), (ValueError("bad"), False)])
def test_only_io_errors_are_retried(exc, retry):
    assert retry_on_io_errors(None, None, SimpleNamespace(data=exc)) is retry


def test_plan_shards_names_outputs_like_embed_and_picks_one(mixed_dir, tmp_path):
    data, _ = mixed_dir
    planned = plan_shards.fn(str(data), str(tmp_path / "out"))
    assert [name for _, name in planned] == ["a.parquet", "b.parquet", "c.parquet"]
    assert plan_shards.fn(str(data), str(tmp_path / "out"), only=str(data / "b.parquet")) == [planned[1]]
    with pytest.raises(ValueError, match="not inside the data root"):
        plan_shards.fn(str(data / "a.parquet"), str(tmp_path / "out"), only=str(data / "b.parquet"))
    with pytest.raises(ValueError, match=rf"^only: expected one Parquet file of {data}, got .* \(3 file\(s\)\)$"):
        plan_shards.fn(str(data), str(tmp_path / "out"), only=str(data))  # never just the first of many
    with pytest.raises(ValueError, match=r"^only: .*found a wildcard$"):
        plan_shards.fn(str(data), str(tmp_path / "out"), only=str(data / "*.parquet"))


@pytest.mark.slow
def test_cache_key_is_never_stale(model_dir, mixed_dir, tmp_path):
    data, table = mixed_dir
    out = str(tmp_path / "out")
    params = {"model_dir": str(model_dir), "shard": str(data / "a.parquet"), "out": out, "output_name": "a.parquet",
              "config": CPU}
    before = {_shard_key(None, params) for _ in range(2)}
    assert len(before) == 2  # nothing committed yet: a fresh key each time, never a cache hit
    assert embed_one.fn(**params)["status"] == "done"
    committed = _shard_key(None, params)
    assert committed == _shard_key(None, params) and committed not in before
    assert _shard_key(None, {**params, "config": EmbedConfig(device="cpu", step_errors=True)}) != committed
    time.sleep(0.01)
    pq.write_table(table.slice(0, 29), data / "a.parquet")  # the shard changes at the same path
    assert _shard_key(None, params) != committed
    embed_one.fn(**params)
    recomputed = _shard_key(None, params)
    os.remove(os.path.join(out, "embeddings", "a.parquet"))  # the output is deleted: no key matches any more
    assert _shard_key(None, params) not in (recomputed, _shard_key(None, params))


@pytest.mark.slow
def test_promotion_needs_a_passed_parity_gate_and_keeps_history(model_dir, tmp_path):
    registry = ModelRegistry(tmp_path / "models")
    first = registry.promote(model_dir, "ecg")
    assert registry.current("ecg") == first and registry.current_dir("ecg").name.startswith(f"{first.model_id}-")
    assert (registry.current_dir("ecg") / "scorer.onnx").is_file()
    again = registry.promote(model_dir, "ecg")
    assert [p.promoted_at for p in registry.history("ecg")] == [first.promoted_at, again.promoted_at]
    meta = json.loads((model_dir / "seqae.json").read_text())
    failed = tmp_path / "failed"
    failed.mkdir()
    for f in model_dir.iterdir():
        (failed / f.name).write_bytes(f.read_bytes())
    meta["export"]["parity"]["passed"] = False
    (failed / "seqae.json").write_text(json.dumps(meta))
    with pytest.raises(PromotionError, match="the parity gate did not pass"):
        registry.promote(failed, "ecg")
    assert registry.current("ecg") == again


def test_the_flows_entry_points_take_a_models_root_at_a_uri(s3, tmp_path, monkeypatch):
    """Issue #26: the registry (and the drift state beside it) on S3 is taken by ``python -m flows``
    and by the served deployments, as local folders are; credentials in it are still refused."""
    from typer.testing import CliRunner

    import flows.tasks as tasks
    from flows import __main__ as entry
    from flows.serve import deployments
    from tests.test_registry import fake_model

    models = f"s3://{s3.bucket}/models"
    for deployment in deployments("s3://b/data", models, "s3://b/out"):
        assert deployment.parameters["models_root"] == models, deployment.name
    emitted = []
    monkeypatch.setattr(tasks, "emit_event", lambda **event: emitted.append(event))
    monkeypatch.setattr(entry, "_prefect_api_url", lambda: None)
    model = str(fake_model(tmp_path / "m"))
    without = CliRunner().invoke(entry.app, ["promote", model, "--models", models])
    assert without.exit_code != 0 and "no PREFECT_API_URL is set" in str(without.exception)
    assert "seqae registry promote" in str(without.exception) and ModelRegistry(models).current("default") is None
    monkeypatch.setattr(entry, "_prefect_api_url", lambda: "http://127.0.0.1:4200/api")
    result = CliRunner().invoke(entry.app, ["promote", model, "--models", models])
    assert result.exit_code == 0, result.output
    promotion = json.loads(result.stdout)  # stdout alone: output interleaves the log lines on stderr
    assert promotion["location"].startswith(f"{models}/default/versions/0123abcd-") and promotion["model_version"] == 1
    assert ModelRegistry(models).current("default").location == promotion["location"]
    assert [e["payload"]["location"] for e in emitted] == [promotion["location"]]
    refused = CliRunner().invoke(entry.app, ["promote", str(tmp_path / "m"), "--models",
                                             "s3://AKIA:Zq9s3cr3t@bucket/models"])
    assert refused.exit_code != 0 and "Zq9s3cr3t" not in refused.output
