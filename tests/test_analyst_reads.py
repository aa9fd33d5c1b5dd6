"""An embed output folder read as an analyst would: DuckDB, Polars, pyarrow and pandas pointed at a
folder or a glob, never through seqae. The data folder holds the data files and nothing else, the
folder's state describes the folder (not the last run), every row names its model, and a folder of
the earlier layout is moved by the next run without losing a committed shard."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae import names
from seqae.config import EmbedConfig
from seqae.infer import committed_outputs, embed, embed_shard
from seqae.infer.commit import OutputFolder
from seqae.infer.job import prepare_embed

pytestmark = pytest.mark.slow  # uses the trained model of tests/conftest.py

CPU = EmbedConfig(device="cpu", workers=1)
LINEAGE = ["model_id", "model_version"]


def state_of(out: Path) -> dict:
    return json.loads((out / "_seqae" / "state.json").read_text())


@pytest.fixture()
def two_runs(model_dir, mixed_dir, tmp_path, make_sine_table):
    """One output folder written by two runs over two data folders: the first has bad rows, the
    second a file that cannot be used (quarantined)."""
    data, _ = mixed_dir
    more = tmp_path / "more"
    more.mkdir()
    pq.write_table(make_sine_table(n=25, length=12, seed=8), more / "d.parquet")
    (more / "e.parquet").write_text("not parquet")
    out = tmp_path / "out"
    first = embed(model_dir, str(data), out, CPU)
    second = embed(model_dir, str(more), out, CPU)
    return out, first, second


def test_every_engine_reads_the_embeddings_folder_and_only_the_data(two_runs):
    import duckdb
    import polars as pl
    import pyarrow.dataset as ds

    out, first, second = two_runs
    rows = first.totals["rows_written"] + second.totals["rows_written"]
    assert rows == 87 + 25
    folder = out / "embeddings"
    assert sorted(p.name for p in folder.iterdir()) == ["a.parquet", "b.parquet", "c.parquet", "d.parquet"]
    for glob in (f"{folder}/*.parquet", f"{folder}/**/*.parquet"):
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()[0][0] == rows, glob
    frame = pl.read_parquet(folder)
    assert frame.height == rows and frame.schema["embedding"] == pl.Array(pl.Float32, 4)
    assert frame.columns[-2:] == LINEAGE
    assert ds.dataset(folder).count_rows() == rows
    assert sum(pq.read_metadata(loc.path).num_rows for loc in committed_outputs(out)) == rows


def test_pandas_reads_the_folder(two_runs):
    pd = pytest.importorskip("pandas")
    out, first, second = two_runs
    frame = pd.read_parquet(out / "embeddings")
    assert len(frame) == first.totals["rows_written"] + second.totals["rows_written"]


def test_cosine_similarity_in_duckdb_with_and_without_a_cast(two_runs):
    import duckdb

    out, _, _ = two_runs
    glob = f"{out}/embeddings/*.parquet"
    query = duckdb.sql(f"SELECT embedding FROM read_parquet('{glob}') WHERE id = 0 LIMIT 1").fetchall()[0][0]
    listed = duckdb.sql(f"""SELECT id, list_cosine_similarity(embedding, {list(map(float, query))}) AS s
                            FROM read_parquet('{glob}') ORDER BY s DESC LIMIT 1""").fetchall()[0]
    cast = duckdb.sql(f"""SELECT id, array_cosine_similarity(embedding::FLOAT[4], {list(map(float, query))}::FLOAT[4])
                          AS s FROM read_parquet('{glob}') ORDER BY s DESC LIMIT 1""").fetchall()[0]
    assert listed[1] == pytest.approx(1.0, abs=1e-5) and cast[1] == pytest.approx(1.0, abs=1e-5)


def test_every_row_names_its_model(two_runs, model_dir):
    import duckdb

    out, _, _ = two_runs
    meta = json.loads((model_dir / names.METADATA_FILE).read_text())
    found = duckdb.sql(f"""SELECT model_id, model_version, count(*) FROM read_parquet('{out}/embeddings/*.parquet')
                           GROUP BY ALL""").fetchall()
    assert found == [(meta["model_id"], meta["model_version"], 87 + 25)]
    schema = pq.read_schema(out / "embeddings" / "a.parquet")
    assert schema.field("model_id").type == pa.string() and schema.field("model_version").type == pa.int32()
    group = pq.ParquetFile(out / "embeddings" / "a.parquet").metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert all(any("DICTIONARY" in e for e in encodings[c]) for c in LINEAGE)


def test_the_state_describes_the_folder_not_the_last_run(two_runs):
    out, first, second = two_runs
    state = state_of(out)
    assert second.totals["shards"] == 2  # the last run saw two files
    assert state["totals"] == {"shards": 5, "shards_committed": 4, "shards_quarantined": 1,
                               "rows_in": 90 + 25 + 0, "rows_written": 87 + 25, "rows_rejected": 3,
                               "rows_quarantined": 0, "steps_written": 0}
    t = state["totals"]
    assert t["rows_in"] == t["rows_written"] + t["rows_rejected"] + t["rows_quarantined"]
    assert [s["output"] for s in state["shards"]] == ["a.parquet", "b.parquet", "c.parquet", "d.parquet"]
    assert [q["output"] for q in state["quarantined"]] == ["e.parquet"]
    assert [m["rows_written"] for m in state["models"]] == [87 + 25]
    runs = sorted((out / "_seqae" / "runs").iterdir())
    assert len(runs) == 2 and state["last_run"] == f"runs/{runs[-1].name}"
    assert json.loads(runs[-1].read_text())["totals"] == OutputFolder(out).last_run()["totals"] == second.totals
    assert OutputFolder(out).read_state()["totals"] == t
    assert sorted(p.name for p in out.iterdir()) == ["_seqae", "embeddings", "rejects"]


def test_the_steps_folder_reads_alone(tmp_path):
    import duckdb
    import polars as pl

    from seqae.config import DataConfig, ModelConfig, TrainConfig
    from seqae.export import export
    from seqae.train import train

    rng = np.random.default_rng(0)
    table = pa.table({"sensor": np.repeat(["a", "b"], 40), "ts": np.tile(np.arange(40, dtype=np.int64), 2),
                      "x": rng.normal(size=80).astype(np.float32)})
    (tmp_path / "long").mkdir()
    pq.write_table(table, tmp_path / "long" / "s.parquet")
    pq.write_table(table, tmp_path / "long" / "t.parquet")
    config = DataConfig(layout="long", key_column="sensor", time_column="ts", feature_columns=("x",), window=10,
                        stride=5)
    train(str(tmp_path / "long"), tmp_path / "m", model_config=ModelConfig(units=2), data_config=config,
          train_config=TrainConfig(max_epochs=1, validation_fraction=0.0))
    export(tmp_path / "m")
    embed(tmp_path / "m", str(tmp_path / "long"), tmp_path / "out", EmbedConfig(device="cpu", step_scores=True))
    steps = tmp_path / "out" / "steps"
    frame = pl.read_parquet(steps)
    assert frame.height == 2 * 80 and frame.columns[-2:] == LINEAGE
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{steps}/*.parquet')").fetchall()[0][0] == 160
    assert [loc.name for loc in committed_outputs(tmp_path / "out", steps=True)] == ["s.parquet", "t.parquet"]
    assert state_of(tmp_path / "out")["totals"]["steps_written"] == 160


# --- the earlier layout ---------------------------------------------------------------------------

def make_old_layout(new: Path, old: Path) -> None:
    """``old``: what seqae before 2026-12 wrote for the same run as ``new`` (built by hand from it):
    data files at the top without the lineage columns, ``_manifest/``, ``_rejects/`` with
    ``_files/``, ``_manifest.json``, ``.seqae.lock``."""
    folder = OutputFolder(new)
    (old / "_manifest").mkdir(parents=True)
    (old / "_rejects" / "_files").mkdir(parents=True)
    for name in folder.entry_names():
        entry = json.loads(folder.entry_file(name).read_bytes())
        entry.pop("output_format")
        (old / "_manifest" / f"{name}.json").write_text(json.dumps(entry, indent=2))
        data = pq.read_table(folder.data_file(name).path).drop_columns(LINEAGE)
        footer = json.loads(pq.read_metadata(folder.data_file(name).path).metadata[b"seqae"])
        footer.pop("output_format")
        pq.write_table(data.replace_schema_metadata({"seqae": json.dumps(footer)}), old / name)
        if folder.rejects_file(name).is_file():
            shutil.copy(folder.rejects_file(name).path, old / "_rejects" / Path(folder.rejects_file(name).path).name)
    for record in (new / "_seqae" / "quarantine").glob("*.json"):
        shutil.copy(record, old / "_rejects" / "_files" / record.name)
    last = json.loads((new / "_seqae" / state_of(new)["last_run"]).read_text())
    (old / "_manifest.json").write_text(json.dumps(last))
    (old / ".seqae.lock").write_text("")
    # an interrupted object-store write (no entry), and a file that is not seqae's
    pq.write_table(pa.table({"id": [1]}).replace_schema_metadata({"seqae": "{}"}), old / "x.parquet")
    pq.write_table(pa.table({"note": ["mine"]}), old / "notes.parquet")


@pytest.fixture()
def old_folder(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    (data / "e.parquet").write_text("not parquet")
    embed(model_dir, str(data), tmp_path / "new", CPU)
    make_old_layout(tmp_path / "new", tmp_path / "old")
    return data, tmp_path / "new", tmp_path / "old"


def tables(out) -> dict[str, pa.Table]:
    return {loc.name: pq.read_table(loc.path) for loc in committed_outputs(out)}


def test_the_next_run_moves_the_earlier_layout_and_recomputes_nothing(model_dir, old_folder):
    import duckdb

    data, new, old = old_folder
    assert [loc.path for loc in committed_outputs(old)] == [str(old / n) for n in ("a.parquet", "b.parquet",
                                                                                    "c.parquet")]
    report = embed(model_dir, str(data), old, CPU)
    assert {s.output: s.status for s in report.shards} == {"a.parquet": "skipped", "b.parquet": "skipped",
                                                          "c.parquet": "skipped", "e.parquet": "quarantined"}
    assert sorted(p.name for p in old.iterdir()) == ["_seqae", "embeddings", "notes.parquet", "rejects"]
    moved, clean = tables(old), tables(new)
    assert sorted(moved) == sorted(clean) == ["a.parquet", "b.parquet", "c.parquet"]
    for name, table in clean.items():
        assert moved[name].equals(table), name  # the same rows, with the lineage columns of the entry
    assert sorted(p.name for p in (old / "rejects").iterdir()) == ["c.rejects.parquet"]
    entry = json.loads((old / "_seqae" / "manifest" / "a.parquet.json").read_text())
    assert entry["migrated_from"] == str(old / "_manifest" / "a.parquet.json") and entry["output_format"] == 2
    state = state_of(old)["totals"]
    assert state == {**state_of(new)["totals"]} and state["rows_in"] == 90
    assert any(p.name.endswith("-legacy.json") for p in (old / "_seqae" / "runs").iterdir())
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{old}/embeddings/*.parquet')").fetchall()[0][0]
    assert count == state["rows_written"] == 87


class Killed(BaseException):
    pass


@pytest.mark.parametrize("where", ["before_an_entry", "after_an_entry"])
def test_a_killed_migration_loses_and_doubles_nothing(model_dir, old_folder, monkeypatch, where):
    from seqae.infer.migrate import LegacyLayout

    data, new, old = old_folder
    owner, attr = (OutputFolder, "put_entry") if where == "before_an_entry" else (LegacyLayout, "withdraw")
    real, calls = getattr(owner, attr), []

    def dies_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, attr, dies_second_time)
    with pytest.raises(Killed):
        embed(model_dir, str(data), old, CPU)
    monkeypatch.setattr(owner, attr, real)
    assert sorted(loc.name for loc in committed_outputs(old)) == ["a.parquet", "b.parquet", "c.parquet"]
    report = embed(model_dir, str(data), old, CPU)
    assert report.totals["shards_skipped"] == 3 and report.totals["shards_done"] == 0
    assert tables(old).keys() == tables(new).keys()
    assert not (old / "_manifest").exists() and not (old / "a.parquet").exists()


def test_shard_tasks_move_the_earlier_layout_too(model_dir, old_folder):
    """The flows' path: ``prepare_embed`` moves the folder; ``embed_shard`` alone moves its own output."""
    data, new, old = old_folder
    alone = old.parent / "alone"
    shutil.copytree(old, alone)
    result = embed_shard(model_dir, data / "b.parquet", alone, CPU)
    assert result.status == "skipped" and (alone / "embeddings" / "b.parquet").is_file()
    assert not (alone / "b.parquet").exists()
    assert sorted(loc.name for loc in committed_outputs(alone)) == ["a.parquet", "b.parquet", "c.parquet"]
    plan = prepare_embed(str(data), old)
    assert not (old / "_manifest").exists() and (old / "embeddings" / "a.parquet").is_file()
    statuses = [embed_shard(model_dir, p.shard, old, CPU, output_name=p.output).status for p in plan.selected]
    assert statuses == ["skipped", "skipped", "skipped", "quarantined"]


def test_an_old_writer_holding_the_folder_is_waited_for(model_dir, old_folder):
    import fcntl
    import os

    from seqae.lease import FolderBusyError

    data, _, old = old_folder
    fd = os.open(old / ".seqae.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_SH)  # an embed_shard of an earlier seqae version
    try:
        with pytest.raises(FolderBusyError, match="another seqae run is writing to this folder"):
            embed(model_dir, str(data), old, CPU)
        assert (old / "_manifest" / "a.parquet.json").is_file()  # nothing moved
    finally:
        os.close(fd)
    assert embed(model_dir, str(data), old, CPU).totals["shards_skipped"] == 3


def test_a_folder_of_the_earlier_layout_on_s3_is_moved_by_the_next_run(s3, model_dir, mixed_dir, tmp_path):
    import pyarrow.fs as pafs

    data, _ = mixed_dir
    config = EmbedConfig(device="cpu", workers=1)
    embed(model_dir, str(data), tmp_path / "new", config)
    make_old_layout(tmp_path / "new", tmp_path / "old")
    (tmp_path / "old" / ".seqae.lock").unlink()  # S3 had a lease instead
    out_uri = f"s3://{s3.bucket}/out"
    filesystem, path = pafs.FileSystem.from_uri(out_uri)
    pafs.copy_files(str(tmp_path / "old"), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=filesystem)
    assert [loc.name for loc in committed_outputs(out_uri)] == ["a.parquet", "b.parquet", "c.parquet"]
    report = embed(model_dir, str(data), out_uri, config)
    assert report.totals["shards_skipped"] == 3 and report.totals["shards_done"] == 0
    listed = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    stored = {info.path for info in listed if info.type == pafs.FileType.File}
    assert not [p for p in stored if "/_manifest" in p or p.endswith("/out/a.parquet")]
    assert f"{s3.bucket}/out/notes.parquet" in stored  # not seqae's: left alone
    remote = {loc.name: pq.read_table(loc.path, filesystem=loc.filesystem) for loc in committed_outputs(out_uri)}
    clean = tables(tmp_path / "new")
    assert sorted(remote) == sorted(clean) == ["a.parquet", "b.parquet", "c.parquet"]
    for name, table in clean.items():
        assert remote[name].equals(table), name
