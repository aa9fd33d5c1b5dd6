import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.data.rejects import REJECT_SCHEMA, rejects_table
from seqae.io import (
    AtomicParquetWriter,
    embedding_schema,
    embedding_table,
    read_metadata,
    row_group_rows,
    with_metadata,
    write_rejects,
)
from seqae.storage import Location, is_temporary

KEYS = pa.schema([pa.field("id", pa.int64())])
PASSTHROUGH = pa.schema([pa.field("label", pa.string())])
SMALL = pa.schema([pa.field("id", pa.int64()), pa.field("x", pa.float32())])


def small_table(n=3):
    return pa.table({"id": np.arange(n, dtype=np.int64), "x": np.ones(n, np.float32)}, schema=SMALL)


@pytest.mark.parametrize("predicts, step_errors, tail", [
    (False, False, ["embedding", "recon_error", "length"]),
    (True, False, ["embedding", "recon_error", "pred_error", "length"]),
    (False, True, ["embedding", "recon_error", "length", "step_error"]),
    (True, True, ["embedding", "recon_error", "pred_error", "length", "step_error"]),
])
def test_embedding_schema_columns_and_types(predicts, step_errors, tail):
    schema = embedding_schema(KEYS, PASSTHROUGH, 5, predicts=predicts, step_errors=step_errors)
    assert schema.names == ["id", "label"] + tail
    assert schema.field("id").type == pa.int64() and schema.field("label").type == pa.string()
    assert schema.field("embedding").type == pa.list_(pa.float32(), 5)
    assert pa.types.is_fixed_size_list(schema.field("embedding").type)
    assert schema.field("recon_error").type == pa.float32()
    assert schema.field("length").type == pa.int32()
    if predicts:
        assert schema.field("pred_error").type == pa.float32()
    if step_errors:
        assert schema.field("step_error").type == pa.list_(pa.float32())
    assert [f.nullable for f in schema][2:] == [False] * len(tail)


@pytest.mark.parametrize("predicts", [False, True])
def test_embedding_table_values_round_trip(tmp_path, predicts):
    schema = embedding_schema(KEYS, PASSTHROUGH, 2, predicts=predicts, step_errors=True)
    keys = pa.table({"id": pa.array([10, 11, 12], pa.int64())})
    passthrough = pa.table({"label": ["a", None, "c"]})
    step = np.arange(12, dtype=np.float64).reshape(3, 4)
    outputs = {"embedding": np.array([[1, 2], [3, 4], [5, 6]], np.float64),
               "recon_error": np.array([0.5, 1.5, 2.5], np.float64),
               "pred_error": np.array([7, 8, 9], np.float32),
               "step_error": step}
    lengths = np.array([2, 4, 1], np.int64)
    table = embedding_table(schema, keys, passthrough, outputs, lengths)
    assert table.schema == schema
    pq.write_table(table, tmp_path / "e.parquet")
    back = pq.read_table(tmp_path / "e.parquet")
    assert back.schema.equals(schema)
    data = back.to_pydict()
    assert data["id"] == [10, 11, 12] and data["label"] == ["a", None, "c"]
    assert data["embedding"] == [[1, 2], [3, 4], [5, 6]]
    assert data["recon_error"] == [0.5, 1.5, 2.5]
    assert data["length"] == [2, 4, 1]
    assert data["step_error"] == [[0, 1], [4, 5, 6, 7], [8]]  # cut to each row's length
    assert ("pred_error" in data) == predicts
    if predicts:
        assert data["pred_error"] == [7, 8, 9]


def test_embedding_table_without_step_errors_ignores_them():
    schema = embedding_schema(KEYS, pa.schema([]), 3, predicts=False, step_errors=False)
    outputs = {"embedding": np.zeros((2, 3), np.float32), "recon_error": np.ones(2, np.float32),
               "step_error": np.ones((2, 5), np.float32)}
    table = embedding_table(schema, pa.table({"id": pa.array([1, 2], pa.int64())}), pa.table({}), outputs, [5, 3])
    assert table.column_names == ["id", "embedding", "recon_error", "length"]
    assert table.column("embedding").to_pylist() == [[0, 0, 0], [0, 0, 0]]


def test_writer_commit_puts_metadata_in_the_footer(tmp_path):
    path = tmp_path / "out" / "a.parquet"
    with AtomicParquetWriter(path, SMALL, row_group_size=2) as writer:
        writer.write(small_table(3))
        writer.write(small_table(0))
        writer.write(pa.table({"id": [5], "x": [2.0]}))  # int64/double: cast to the schema
        assert not path.exists()
        location = writer.commit({"rows": writer.rows, "run": "r1"})
    assert location == Location.of(path)
    assert os.listdir(tmp_path / "out") == ["a.parquet"]
    assert read_metadata(path) == {"rows": 4, "run": "r1"}
    assert pq.read_metadata(path).metadata[b"seqae"] == b'{"rows": 4, "run": "r1"}'
    file = pq.ParquetFile(path)
    assert file.schema_arrow.equals(SMALL) and file.metadata.num_row_groups == 3
    assert file.read().column("x").to_pylist() == [1.0, 1.0, 1.0, 2.0]


def test_writer_encodes_floats_plainly_and_keeps_statistics_for_flat_columns(tmp_path):
    schema = embedding_schema(KEYS, PASSTHROUGH, 4, predicts=False, step_errors=True, scored=True)
    n = 2000
    rng = np.random.default_rng(0)
    outputs = {"embedding": rng.standard_normal((n, 4)), "recon_error": rng.random(n), "step_error": rng.random((n, 3)),
               "score": rng.random(n), "is_anomaly": rng.random(n) < 0.1}
    table = embedding_table(schema, pa.table({"id": np.arange(n, dtype=np.int64)}),
                            pa.table({"label": ["a", "b"] * (n // 2)}), outputs, np.full(n, 3))
    with AtomicParquetWriter(tmp_path / "e.parquet", schema) as writer:
        writer.write(table)
        writer.commit()
    group = pq.ParquetFile(tmp_path / "e.parquet").metadata.row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}

    def dictionary(path):
        return any("DICTIONARY" in e for e in chunks[path].encodings)

    assert dictionary("label") and dictionary("length") and dictionary("id")
    assert not dictionary("embedding.list.element") and not dictionary("recon_error") and not dictionary("score")
    assert not dictionary("step_error.list.element")
    assert chunks["score"].statistics.has_min_max and chunks["recon_error"].statistics.has_min_max
    assert chunks["embedding.list.element"].statistics is None
    assert pq.read_table(tmp_path / "e.parquet").equals(table)


def test_read_metadata_of_a_foreign_file_is_empty(tmp_path):
    pq.write_table(small_table(), tmp_path / "plain.parquet")
    assert read_metadata(tmp_path / "plain.parquet") == {}
    pq.write_table(small_table().cast(with_metadata(SMALL, {"b": 1, "a": [2]})), tmp_path / "m.parquet")
    assert read_metadata(f"file://{tmp_path}/m.parquet") == {"a": [2], "b": 1}


def test_writer_abort_and_exception_leave_nothing(tmp_path):
    writer = AtomicParquetWriter(tmp_path / "a.parquet", SMALL)
    writer.write(small_table())
    (name,) = os.listdir(tmp_path)
    assert is_temporary(name)
    writer.abort()
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="stop"):
        with AtomicParquetWriter(tmp_path / "b.parquet", SMALL) as writer:
            writer.write(small_table())
            raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []


def test_writer_through_a_file_uri(tmp_path):
    with AtomicParquetWriter(f"file://{tmp_path}/sub/u.parquet", SMALL) as writer:
        writer.write(small_table(2))
        location = writer.commit({"ok": True})
    assert location.path == str(tmp_path / "sub" / "u.parquet") and location.uri == location.path
    assert pq.read_table(location.path).num_rows == 2
    assert read_metadata(location) == {"ok": True}
    assert os.listdir(tmp_path / "sub") == ["u.parquet"]


def test_writer_commit_without_metadata(tmp_path):
    writer = AtomicParquetWriter(tmp_path / "a.parquet", SMALL)
    writer.commit()
    assert read_metadata(tmp_path / "a.parquet") == {} and pq.read_table(tmp_path / "a.parquet").num_rows == 0


def rejects(n, shard="in/part-0.parquet"):
    return rejects_table(shard, np.arange(n), [str(i) for i in range(n)], ["values"] * n, ["empty"] * n,
                         ["the sequence has no steps"] * n)


@pytest.mark.parametrize("tables", [[], [rejects(0)]])
def test_write_rejects_with_no_rows_removes_a_stale_file(tmp_path, tables):
    stale = tmp_path / "_rejects" / "part-0.rejects.parquet"
    stale.parent.mkdir()
    stale.write_bytes(b"stale")
    assert write_rejects(tmp_path, "in/part-0.parquet", tables) is None
    assert os.listdir(tmp_path / "_rejects") == []
    assert write_rejects(tmp_path, "part-0.parquet", tables) is None  # nothing there: still fine


def test_write_rejects_writes_the_reject_schema(tmp_path):
    location = write_rejects(str(tmp_path), "s3://bucket/in/part-7.snappy.parquet",
                             [rejects(2), rejects(0), rejects(1)], {"shard": "part-7"})
    expected = tmp_path / "_rejects" / "part-7.snappy.rejects.parquet"
    assert location.path == str(expected)
    assert os.listdir(tmp_path / "_rejects") == ["part-7.snappy.rejects.parquet"]
    table = pq.read_table(expected)
    assert table.schema.equals(REJECT_SCHEMA)
    assert table.column("row").to_pylist() == [0, 1, 0]
    assert table.column("key").to_pylist() == ["0", "1", "0"]
    assert read_metadata(expected) == {"shard": "part-7"}
    write_rejects(tmp_path, "part-7.snappy.parquet", [rejects(1)])
    assert pq.read_table(expected).num_rows == 1 and read_metadata(expected) == {}


@pytest.mark.parametrize("fields, rows", [
    ([pa.field("id", pa.int64())], 1 << 20),  # 8 bytes a row: capped
    ([pa.field("embedding", pa.list_(pa.float32(), 1 << 20))], 8192),  # 4 MiB a row: floored
    ([pa.field("embedding", pa.list_(pa.float32(), 256)), pa.field("id", pa.int64())], (64 << 20) // 1032),
    ([pa.field("key", pa.string()), pa.field("step_error", pa.list_(pa.float32())),
      pa.field("ok", pa.bool_())], (64 << 20) // (16 + 1024 + 1)),
])
def test_row_group_rows(fields, rows):
    assert row_group_rows(pa.schema(fields)) == rows


def test_row_group_rows_bounds():
    schema = pa.schema([pa.field("x", pa.float64())])
    assert row_group_rows(schema, target_bytes=1) == 8192
    assert row_group_rows(schema, target_bytes=8 * 10_000) == 10_000
    assert row_group_rows(pa.schema([])) == 1 << 20


def _shards(tmp_path, rels):
    from seqae.data import resolve_shards

    for rel in rels:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [1]}), tmp_path / rel)
    return resolve_shards(str(tmp_path))


def test_a_hashed_output_name_never_equals_another_shards_name(tmp_path):
    """``x.parquet`` and ``x.pq`` both hash; a real file already called what the first hash gives
    keeps its name, and the hashed one gets a longer hash."""
    from seqae.io import output_names_for
    from seqae.storage import sha256_text

    clash = f"x-{sha256_text('x.parquet')[:8]}.parquet"
    shards = _shards(tmp_path, ["x.parquet", "x.pq", clash])
    out = output_names_for(shards, str(tmp_path))
    assert len(set(out.values())) == 3
    assert out[str(tmp_path / clash)] == clash
    assert out[str(tmp_path / "x.parquet")] == f"x-{sha256_text('x.parquet')[:12]}.parquet"
    assert out[str(tmp_path / "x.pq")] == f"x-{sha256_text('x.pq')[:8]}.parquet"
    assert output_names_for(list(reversed(shards)), str(tmp_path)) == out  # independent of listing order


def test_output_schema_is_the_same_whatever_wrote_the_input():
    """pandas metadata, non-nullable fields (pyarrow), large strings (Polars): one output schema."""
    from seqae.io import output_field

    written = [pa.field("k", pa.string(), nullable=False, metadata={b"pandas": b"{}"}), pa.field("k", pa.large_string()),
               pa.field("k", pa.string())]
    assert {output_field(f) for f in written} == {pa.field("k", pa.string())}
    schemas = {embedding_schema(pa.schema([f]), pa.schema([]), 2, predicts=False, step_errors=False) for f in written}
    assert len(schemas) == 1 and not next(iter(schemas)).field("k").metadata


def test_lineage_columns_come_last_and_cost_next_to_nothing(tmp_path):
    from seqae.io import Lineage

    schema = embedding_schema(KEYS, PASSTHROUGH, 4, predicts=False, step_errors=False, lineage=True)
    assert schema.names[-2:] == ["model_id", "model_version"]
    assert schema.field("model_id").type == pa.string() and schema.field("model_version").type == pa.int32()
    n = 10_000
    outputs = {"embedding": np.zeros((n, 4)), "recon_error": np.zeros(n)}
    keys, passthrough = pa.table({"id": np.arange(n, dtype=np.int64)}), pa.table({"label": ["a"] * n})
    table = embedding_table(schema, keys, passthrough, outputs, np.full(n, 3), Lineage("m-1a2b", 7))
    assert set(table.column("model_id").to_pylist()) == {"m-1a2b"} and set(table.column("model_version").to_pylist()) == {7}
    with AtomicParquetWriter(tmp_path / "e.parquet", schema) as writer:
        writer.write(table)
        writer.commit()
    group = pq.ParquetFile(tmp_path / "e.parquet").metadata.row_group(0)
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    for column in ("model_id", "model_version"):
        assert any("DICTIONARY" in e for e in chunks[column].encodings)
        assert chunks[column].total_compressed_size < 200  # one dictionary value and a run of zeros
    with pytest.raises(ValueError, match="^lineage: the schema has the lineage columns; expected a Lineage, got None$"):
        embedding_table(schema, keys, passthrough, outputs, np.full(n, 3))


def test_an_input_column_named_like_a_lineage_column_is_refused():
    from seqae.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^key or passthrough column 'model_id': the outputs carry their own "
                                          r"model_id \(the model that wrote each row\); expected no input column "
                                          r"of that name, rename it$"):
        embedding_schema(KEYS, pa.schema([pa.field("model_id", pa.string())]), 2, predicts=False, step_errors=False,
                         lineage=True)


def test_step_scores_carry_the_lineage_too():
    from seqae.io import Lineage, step_scores_schema, step_scores_table

    schema = step_scores_schema(pa.field("k", pa.string()), pa.field("t", pa.int64()), lineage=True)
    table = step_scores_table(schema, pa.array(["a", "a"]), [1, 2], [0.5, 0.5], [1.0, 1.0], [1, 2],
                              lineage=Lineage("m", 3), window_error_mean=[0.25, 0.5],
                              window_error_min=[0.25, 0.25])
    assert table.column("model_id").to_pylist() == ["m", "m"] and table.column("model_version").to_pylist() == [3, 3]


def test_a_staged_writer_keeps_the_target_folder_clean(tmp_path):
    staging = Location.of(tmp_path / "staging")
    writer = AtomicParquetWriter(tmp_path / "data" / "a.parquet", SMALL, staging=staging)
    writer.write(small_table())
    assert os.listdir(tmp_path / "data") == [] and len(os.listdir(tmp_path / "staging")) == 1
    writer.commit()
    assert os.listdir(tmp_path / "data") == ["a.parquet"] and os.listdir(tmp_path / "staging") == []


def test_rejects_of_an_embed_folder_go_under_the_name_given(tmp_path):
    location = write_rejects(tmp_path, "part-1.parquet", [rejects(1)], under="rejects")
    assert location.path == str(tmp_path / "rejects" / "part-1.rejects.parquet")


# --- the output-column table ------------------------------------------------------------------------

def test_the_output_column_table_agrees_with_the_modes_and_the_embed_options():
    import dataclasses

    from seqae.config import MODES, EmbedConfig
    from seqae.io import (
        ALWAYS,
        LINEAGE,
        MODEL,
        NEIGHBOURS,
        OUTPUT_COLUMNS,
        SCORED,
        STEP_SCORE_COLUMNS,
        output_options,
        scorer_outputs,
        select_columns,
    )

    model_columns = {c.name for c in OUTPUT_COLUMNS if c.when == MODEL}
    assert all(set(spec.columns) <= model_columns for spec in MODES.values())
    # Any other condition is a boolean option of EmbedConfig (a typo would never switch its column on).
    options = {c.when for c in (*OUTPUT_COLUMNS, *STEP_SCORE_COLUMNS)} - {MODEL, ALWAYS, SCORED, LINEAGE, NEIGHBOURS}
    booleans = {f.name for f in dataclasses.fields(EmbedConfig) if f.type in ("bool", bool)}
    assert options == {"step_errors"} and options <= booleans
    assert output_options(EmbedConfig(step_errors=True, step_scores=True)) == ("step_errors",)
    assert output_options(EmbedConfig()) == ()
    for name, spec in MODES.items():  # the session is asked for every output the columns are made of
        columns = select_columns(spec.columns, options=("step_errors",), scored=True, lineage=True)
        assert sorted(scorer_outputs(columns)) == sorted(spec.outputs), name
        assert scorer_outputs(select_columns(spec.columns)) == [o for o in spec.outputs if o != "step_error"], name
    assert scorer_outputs(select_columns(steps=True)) == ["step_error", "recon_error"]
    # a model with a bank of training windows: the window's distance, and the least of them per step
    assert [c.name for c in select_columns(neighbours=True) if c.when == NEIGHBOURS] == ["nearest_distance"]
    assert scorer_outputs(select_columns(steps=True, neighbours=True)) == ["step_error", "recon_error",
                                                                           "nearest_distance"]
    import pickle  # no lambdas: an InferenceModel holding its columns pickles

    assert [c.field(3) for c in pickle.loads(pickle.dumps(OUTPUT_COLUMNS))] == [c.field(3) for c in OUTPUT_COLUMNS]


def test_one_entry_of_the_output_table_builds_both_the_schema_and_the_table(monkeypatch):
    """A new optional column is one ``OutputColumn``: the schema and every table carry it, in its place,
    only when its option is on."""
    from seqae import io

    extra = io.OutputColumn("step_error_max", pa.float32(), "step_errors",
                            lambda values, field: pa.array(values["step_error"].max(axis=1).astype(np.float32)),
                            needs="step_error")
    monkeypatch.setattr(io, "OUTPUT_COLUMNS", (*io.OUTPUT_COLUMNS, extra))
    schema = embedding_schema(KEYS, PASSTHROUGH, 2, predicts=False, step_errors=True)
    assert schema.names == ["id", "label", "embedding", "recon_error", "length", "step_error", "step_error_max"]
    assert schema.field("step_error_max") == pa.field("step_error_max", pa.float32(), nullable=False)
    outputs = {"embedding": np.zeros((2, 2)), "recon_error": np.ones(2), "step_error": np.array([[1, 5], [2, 0]])}
    table = embedding_table(schema, pa.table({"id": [1, 2]}), pa.table({"label": ["a", "b"]}), outputs, [2, 1])
    assert table.schema == schema and table.column("step_error_max").to_pylist() == [5, 2]
    assert "step_error_max" not in embedding_schema(KEYS, PASSTHROUGH, 2, predicts=False, step_errors=False).names
