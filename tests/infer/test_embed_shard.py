"""The per-shard unit, the commit protocol on any filesystem, and the parallel job's determinism."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from seqae import names
from seqae.config import EmbedConfig
from seqae.data import resolve_shards
from seqae.errors import ContractError, SeqaeError
from seqae.infer import InferenceModel, committed_outputs, embed, embed_shard, plan_outputs
from seqae.infer.commit import OutputFolder
from seqae.infer.stages import ShardOutput
from seqae.storage import Location

pytestmark = pytest.mark.slow  # uses the trained model of tests/infer/conftest.py

CPU = EmbedConfig(device="cpu")


def tables(out) -> dict[str, pa.Table]:
    return {loc.name: pq.read_table(loc.path, filesystem=loc.filesystem) for loc in committed_outputs(out)}


def test_embed_shard_commits_skips_and_matches_embed(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    embed(model_dir, str(data), tmp_path / "job", CPU)
    model = InferenceModel.open(model_dir, CPU)  # one session for every shard
    results = [embed_shard(model, shard, tmp_path / "units", CPU, output_name=name)
               for shard, name in plan_outputs(str(data), tmp_path / "units")]
    assert [r.status for r in results] == ["done"] * 3
    assert [(r.rows_in, r.rows_written, r.rows_rejected) for r in results] == [(30, 30, 0), (30, 30, 0), (30, 27, 3)]
    job, units = tables(tmp_path / "job"), tables(tmp_path / "units")
    assert job.keys() == units.keys() == {"a.parquet", "b.parquet", "c.parquet"}
    for name in job:
        assert job[name].equals(units[name])
    again = embed_shard(model, data / "c.parquet", tmp_path / "units", CPU)
    assert again.status == "skipped" and again.rows_rejected == 3
    # embed() over what the units committed skips every shard: one commit protocol
    assert embed(model_dir, str(data), tmp_path / "units", CPU).totals["shards_skipped"] == 3
    forced = embed_shard(model_dir, data / "c.parquet", tmp_path / "units", EmbedConfig(device="cpu", overwrite=True))
    assert forced.status == "done"


def test_embed_shard_refuses_a_folder_of_many_files(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    with pytest.raises(SeqaeError, match=r"expected one Parquet file, found 3$"):
        embed_shard(model_dir, data, tmp_path / "out", CPU)


def test_workers_do_not_change_any_output(model_dir, make_sine_table, tmp_path):
    table = make_sine_table(n=240, length=12, seed=3)
    data = tmp_path / "in"
    data.mkdir()
    for i in range(6):
        pq.write_table(table.slice(i * 40, 40), data / f"p{i}.parquet", row_group_size=7)
    runs = {}
    for workers in (1, 3):
        config = EmbedConfig(device="cpu", workers=workers, read_batch_size=9, batch_size=4, queue_size=1)
        report = embed(model_dir, str(data), tmp_path / f"w{workers}", config)
        assert report.totals["rows_written"] == 240
        runs[workers] = tables(tmp_path / f"w{workers}")
    for name, t in runs[1].items():
        assert t.equals(runs[3][name]), name
        assert t.column("id").to_pylist() == sorted(t.column("id").to_pylist())  # input order kept


def test_output_through_a_file_uri(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    uri = f"file://{tmp_path}/out"
    report = embed(model_dir, f"file://{data}", uri, CPU)
    assert report.totals["rows_written"] == 87 and report.out == f"{tmp_path}/out"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["_seqae", "embeddings", "rejects"]
    assert sorted(p.name for p in (tmp_path / "out" / "embeddings").iterdir()) == ["a.parquet", "b.parquet",
                                                                                  "c.parquet"]
    assert embed(model_dir, str(data), uri, CPU).totals["shards_skipped"] == 3


def test_without_atomic_rename_the_manifest_is_the_commit(model_dir, mixed_dir, tmp_path, monkeypatch):
    """On a filesystem that cannot rename atomically (an object store; here a SubTreeFileSystem,
    which seqae treats as one), the data file is written under its final name and counts only once
    its manifest entry exists."""
    data, _ = mixed_dir
    (tmp_path / "store").mkdir()
    out = Location(pafs.SubTreeFileSystem(str(tmp_path / "store"), pafs.LocalFileSystem()), "out", "mem://out")
    assert not out.atomic_rename
    shard = resolve_shards(str(data / "a.parquet"))[0]
    real_commit = OutputFolder.commit

    def killed(self, name, record):
        raise KeyboardInterrupt  # dies after the data file, before the entry

    monkeypatch.setattr(OutputFolder, "commit", killed)
    with pytest.raises(KeyboardInterrupt):
        embed_shard(model_dir, shard, out, CPU)
    assert (tmp_path / "store" / "out" / "embeddings" / "a.parquet").is_file()  # in place, no temporary name
    assert committed_outputs(out) == []  # but not committed
    assert OutputFolder(out).done(shard, "a.parquet", InferenceModel.open(model_dir, CPU).identity) is None
    monkeypatch.setattr(OutputFolder, "commit", real_commit)
    result = embed_shard(model_dir, shard, out, CPU)
    assert result.status == "done"
    assert [loc.name for loc in committed_outputs(out)] == ["a.parquet"]
    assert embed_shard(model_dir, shard, out, CPU).status == "skipped"


def test_fail_fast_stops_the_job_and_leaves_nothing_half_written(model_dir, mixed_dir, tmp_path):
    data, table = mixed_dir
    pq.write_table(pa.table({"id": [1], "values": [["x"]]}), data / "b.parquet")
    with pytest.raises(ContractError, match=r"b.parquet: column 'values': wrong type"):
        embed(model_dir, str(data), tmp_path / "out", EmbedConfig(device="cpu", workers=2, fail_fast=True))
    left = [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(names.TMP_SUFFIX)]
    assert left == []
    for location in committed_outputs(tmp_path / "out"):
        pq.read_table(location.path)  # whatever is committed reads whole
    pq.write_table(table.slice(30, 30), data / "b.parquet")
    report = embed(model_dir, str(data), tmp_path / "out", CPU)
    assert report.totals["rows_in"] == 90 and report.totals["shards"] == 3


def test_the_count_check_catches_a_lost_batch(model_dir, mixed_dir, tmp_path, monkeypatch):
    data, _ = mixed_dir
    real_write = ShardOutput.write
    calls = {"n": 0}

    def lossy(self, read, scores):
        calls["n"] += 1
        if calls["n"] != 2:  # the second batch never reaches the file
            real_write(self, read, scores)

    monkeypatch.setattr(ShardOutput, "write", lossy)
    with pytest.raises(SeqaeError, match=r"a.parquet: the reader accepted 30 rows but 20 were written"):
        embed_shard(model_dir, data / "a.parquet", tmp_path / "out", EmbedConfig(device="cpu", read_batch_size=10))
    assert committed_outputs(tmp_path / "out") == []
    assert not list(Path(tmp_path / "out").rglob("*.parquet"))


def test_null_scorer_measures_the_pipeline_with_the_real_schema(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    report = embed(model_dir, str(data), tmp_path / "out", CPU, null_scorer=True)
    assert report.provider == "null" and report.totals["rows_written"] == 87
    out = tables(tmp_path / "out")["a.parquet"]
    assert out.schema.names == ["id", "label", "embedding", "recon_error", "pred_error", "length", "model_id",
                                "model_version"]
    assert np.stack(out.column("embedding").to_numpy(zero_copy_only=False)).shape == (out.num_rows, 4)


def test_embed_shard_quarantines_a_file_that_breaks_the_contract_like_embed(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    pq.write_table(pa.table({"id": [1, 2], "values": [["x"], ["y"]]}), data / "d.parquet")
    result = embed_shard(model_dir, data / "d.parquet", tmp_path / "out", CPU)
    assert (result.status, result.rows_in, result.rows_quarantined) == ("quarantined", 2, 2)
    assert result.error.startswith(f"{data / 'd.parquet'}: column 'values': wrong type")
    assert (tmp_path / "out" / "_seqae" / "quarantine" / "d.parquet.json").is_file()
    with pytest.raises(ContractError, match="column 'values': wrong type"):
        embed_shard(model_dir, data / "d.parquet", tmp_path / "out", EmbedConfig(device="cpu", fail_fast=True))
    report = embed(model_dir, str(data), tmp_path / "job", CPU)
    assert [s.to_dict() | {"seconds": 0} for s in report.quarantined] == [result.to_dict() | {"seconds": 0}]


def test_concurrent_embed_shard_calls_for_one_shard_run_one_after_the_other(model_dir, mixed_dir, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    data, _ = mixed_dir
    model = InferenceModel.open(model_dir, CPU)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: embed_shard(model, data / "c.parquet", tmp_path / "out", CPU), range(4)))
    assert sorted(r.status for r in results) == ["done", "skipped", "skipped", "skipped"]
    assert [loc.name for loc in committed_outputs(tmp_path / "out")] == ["c.parquet"]
