import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.data import DataConfig, ShardReader, resolve_shards
from seqae.errors import ConfigError, ContractError, InputNotFoundError
from seqae.scan import scan


def write(path, table):
    pq.write_table(table, path)
    return str(path)


def read_all(path, config=None, **kwargs):
    shard = resolve_shards(str(path))[0]
    reader = ShardReader(shard, config or DataConfig(), **kwargs)
    batches, rejects = [], []
    for batch, rej in reader:
        batches.append(batch)
        rejects.append(rej)
    return reader, batches, pa.concat_tables(rejects)


def test_one_feature_variable_lengths_are_post_padded(tmp_path):
    path = write(tmp_path / "a.parquet", pa.table({
        "id": [1, 2, 3], "label": [0, 1, 0],
        "values": pa.array([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]], pa.list_(pa.float32())),
    }))
    reader, (batch,), rejects = read_all(path)
    assert batch.values.shape == (3, 3, 1)
    np.testing.assert_array_equal(batch.lengths, [2, 1, 3])
    np.testing.assert_array_equal(batch.values[..., 0], [[1, 2, 0], [3, 0, 0], [4, 5, 6]])
    assert batch.keys.column("id").to_pylist() == [1, 2, 3]
    assert batch.passthrough.column_names == ["label"]
    assert rejects.num_rows == 0
    assert reader.stats.rows_in == 3 and reader.stats.sequences_out == 3


@pytest.mark.parametrize("inner", [pa.list_(pa.float64()), pa.list_(pa.float32(), 2)])
def test_multivariate_nested_lists(tmp_path, inner):
    values = [[[1, 10], [2, 20]], [[3, 30]]]
    path = write(tmp_path / "m.parquet", pa.table({"id": ["a", "b"], "values": pa.array(values, pa.list_(inner))}))
    reader, (batch,), _ = read_all(path)
    assert reader.num_features == 2
    np.testing.assert_array_equal(batch.values, [[[1, 10], [2, 20]], [[3, 30], [0, 0]]])
    assert batch.values.dtype == np.float32


def test_fixed_size_sequences_decode_without_padding(tmp_path):
    flat = pa.array(np.arange(12, dtype=np.float32))
    values = pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, 2), 3)
    path = write(tmp_path / "f.parquet", pa.table({"id": [7, 8], "values": values}))
    _, (batch,), _ = read_all(path)
    np.testing.assert_array_equal(batch.values.reshape(-1), np.arange(12))
    assert batch.values.shape == (2, 3, 2)


def test_row_level_problems_go_to_rejects_with_reasons(tmp_path):
    path = write(tmp_path / "bad.parquet", pa.table({
        "id": pa.array([1, None, 3, 4, 5, 6, 7], pa.int64()),
        "values": pa.array([[1.0], [2.0], None, [float("nan")], [], [1.0, None], [1.0, 2.0, 3.0, 4.0]],
                           pa.list_(pa.float32())),
    }))
    reader, (batch,), rejects = read_all(path, DataConfig(max_length=3))
    assert batch.keys.column("id").to_pylist() == [1]
    assert rejects.to_pydict() == {
        "shard": [path] * 6,
        "row": [1, 2, 3, 4, 5, 6],
        "key": [None, "3", "4", "5", "6", "7"],
        "column": ["id", "values", "values", "values", "values", "values"],
        "reason": ["null_key", "null_sequence", "non_finite", "empty", "null_value", "too_long"],
        "detail": ["the key is null", "the sequence is null", "expected finite numbers, found NaN at step 0",
                   "the sequence has no steps", "the sequence holds a null value",
                   "expected at most 3 steps, found 4"],
    }
    assert reader.stats.rows_in == 7 and reader.stats.rows_rejected == 6 and reader.stats.sequences_out == 1


def test_wrong_inner_feature_count_is_rejected(tmp_path):
    path = write(tmp_path / "w.parquet", pa.table({
        "id": [1, 2], "values": pa.array([[[1.0, 2.0]], [[1.0, 2.0, 3.0]]], pa.list_(pa.list_(pa.float32()))),
    }))
    _, (batch,), rejects = read_all(path, DataConfig(num_features=2))
    assert batch.keys.column("id").to_pylist() == [1]
    assert rejects.column("reason").to_pylist() == ["feature_count"]
    assert rejects.column("detail").to_pylist() == ["expected 2 features per step, found 3 at step 0"]


def test_non_finite_detail_names_the_first_step_feature_and_value(tmp_path):
    inf, nan = float("inf"), float("nan")
    path = write(tmp_path / "n.parquet", pa.table({
        "id": [1, 2, 3],
        "values": pa.array([[[1.0, 2.0], [3.0, -inf], [nan, 1.0]], [[1.0, 2.0], [inf, 0.0]], [[0.0, 1.0]]],
                           pa.list_(pa.list_(pa.float32()))),
    }))
    _, (batch,), rejects = read_all(path, DataConfig(num_features=2))
    assert batch.keys.column("id").to_pylist() == [3]
    assert rejects.column("detail").to_pylist() == ["expected finite numbers, found -infinity at step 1, feature 1",
                                                    "expected finite numbers, found infinity at step 1, feature 0"]


def test_too_short(tmp_path):
    path = write(tmp_path / "s.parquet", pa.table({"id": [1], "values": pa.array([[1.0]], pa.list_(pa.float32()))}))
    _, _, rejects = read_all(path, DataConfig(min_length=2))
    assert rejects.column("detail").to_pylist() == ["expected at least 2 steps, found 1"]


def test_missing_column_names_file_column_and_what_was_found(tmp_path):
    path = write(tmp_path / "x.parquet", pa.table({"id": [1], "seq": pa.array([[1.0]], pa.list_(pa.float32()))}))
    with pytest.raises(ContractError) as err:
        read_all(path)
    assert str(err.value) == (
        f"{path}: column 'values': column is missing; expected list<float32> or list<list<float32>>, "
        "found columns id, seq"
    )


def test_wrong_element_type(tmp_path):
    path = write(tmp_path / "t.parquet", pa.table({"id": [1], "values": pa.array([["a"]], pa.list_(pa.string()))}))
    with pytest.raises(ContractError) as err:
        read_all(path)
    assert str(err.value) == (
        f"{path}: column 'values': wrong type; expected list<float32> (one feature) or "
        "list<list<float32>> ([time][feature]), found list<string>"
    )


def test_wrong_fixed_feature_count_is_a_file_error(tmp_path):
    flat = pa.array(np.zeros(6, dtype=np.float32))
    values = pa.ListArray.from_arrays(pa.array([0, 2]), pa.FixedSizeListArray.from_arrays(flat, 3))
    path = write(tmp_path / "f.parquet", pa.table({"id": [1], "values": values}))
    with pytest.raises(ContractError, match=r"wrong feature count; expected 2 features per step, found 3"):
        read_all(path, DataConfig(num_features=2))


def test_integer_values_are_accepted_and_cast(tmp_path):
    path = write(tmp_path / "i.parquet", pa.table({"id": [1], "values": pa.array([[1, 2]], pa.list_(pa.int16()))}))
    _, (batch,), _ = read_all(path)
    assert batch.values.dtype == np.float32 and batch.values[0, :, 0].tolist() == [1.0, 2.0]


def test_sliced_batches_and_many_small_shards_reconcile(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 9, size=300)
    seqs = [rng.normal(size=n).astype(np.float32).tolist() for n in lengths]
    seqs[17] = None
    expected = {i: s for i, s in enumerate(seqs) if s}
    table = pa.table({"id": np.arange(300), "values": pa.array(seqs, pa.list_(pa.float32()))})
    for i in range(30):
        pq.write_table(table.slice(i * 10, 10), tmp_path / f"part-{i:03d}.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    report = scan(str(tmp_path), batch_size=3, rejects_dir=tmp_path / "out")
    assert len(report.shards) == 30
    totals = report.totals
    assert totals["rows_in"] == 300
    assert totals["rows_in"] == totals["sequences_out"] + totals["rows_rejected"]
    assert totals["sequences_out"] == len(expected)
    assert report.reasons == {"empty": int((lengths == 0).sum()) - (lengths[17] == 0), "null_sequence": 1}
    got = {}
    for shard in resolve_shards(str(tmp_path)):
        for batch, _ in ShardReader(shard, DataConfig(), batch_size=4):
            for key, row, n in zip(batch.keys.column("id").to_pylist(), batch.values[..., 0], batch.lengths):
                got[key] = row[:n].tolist()
    assert got.keys() == expected.keys()
    for key, seq in expected.items():
        np.testing.assert_allclose(got[key], seq)
    rejected = pq.read_table(tmp_path / "out" / "_rejects").num_rows
    assert rejected == totals["rows_rejected"]


def test_resolve_file_dir_glob_and_uri(tmp_path):
    for name in ("a.parquet", "b.parquet", "_hidden.parquet", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "_rejects").mkdir()
    (tmp_path / "_rejects" / "r.parquet").write_bytes(b"x")
    names = lambda shards: [s.path.rsplit("/", 1)[-1] for s in shards]
    assert names(resolve_shards(str(tmp_path))) == ["a.parquet", "b.parquet"]
    assert names(resolve_shards(str(tmp_path / "b*.parquet"))) == ["b.parquet"]
    assert names(resolve_shards(f"file://{tmp_path}/a.parquet")) == ["a.parquet"]
    assert names(resolve_shards(f"file://{tmp_path}/*.parquet")) == ["_hidden.parquet", "a.parquet", "b.parquet"]
    with pytest.raises(InputNotFoundError, match="no Parquet file found"):
        resolve_shards(str(tmp_path / "nothing-*.parquet"))


def test_fingerprint_is_stable_and_changes_with_the_file(tmp_path):
    import os

    path = tmp_path / "a.parquet"
    path.write_bytes(b"one")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = resolve_shards(str(path))[0]
    assert before.fingerprint == resolve_shards(str(path))[0].fingerprint
    path.write_bytes(b"two")  # same size: only the modification time tells
    os.utime(path, ns=(2_000_000_000, 2_000_000_000))
    after = resolve_shards(str(path))[0]
    assert after.size == before.size and after.fingerprint != before.fingerprint
    import hashlib

    assert after.content_hash() == hashlib.sha256(b"two").hexdigest()


def test_config_refuses_bad_values_and_unknown_keys():
    with pytest.raises(ConfigError, match=r"^min_length: expected a positive integer, got 0$"):
        DataConfig(min_length=0)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) colour"):
        DataConfig.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match="feature_columns: the long layout needs"):
        DataConfig(layout="long", window=4)
    assert DataConfig.from_dict(DataConfig(max_length=9).to_dict()) == DataConfig(max_length=9)


def test_a_passing_io_error_is_not_a_contract_breach(tmp_path, monkeypatch):
    """A reset connection must reach the orchestrator as itself (it retries it), while a file that is
    broken or cannot be opened is a ContractError (quarantined)."""
    import pyarrow.parquet as pq_module

    from seqae.data.reader import unreadable

    pq.write_table(pa.table({"id": [1], "values": [[1.0]]}), tmp_path / "x.parquet")
    (shard,) = resolve_shards(str(tmp_path))
    assert isinstance(unreadable(shard, ConnectionResetError("reset")), ConnectionResetError)
    assert isinstance(unreadable(shard, PermissionError("denied")), ContractError)
    assert isinstance(unreadable(shard, pa.ArrowInvalid("magic bytes")), ContractError)

    def reset(*args, **kwargs):
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(pq_module.ParquetFile, "iter_batches", reset)
    with pytest.raises(ConnectionResetError):
        list(ShardReader(shard, DataConfig()))


@pytest.mark.parametrize("value_type, max_abs_value", [(pa.float16(), 1e30), (pa.float16(), None), (pa.float16(), 100.0),
                                                       (pa.float32(), 1e300), (pa.float64(), 1e300)])
def test_narrow_floats_and_wide_limits_decode_without_a_numpy_warning(tmp_path, value_type, max_abs_value):
    values = [[1.5, -2.0], [1000.0], [float("inf")], [3.0, float("nan")]]
    path = write(tmp_path / "h.parquet", pa.table({"id": [1, 2, 3, 4], "values": pa.array(values, pa.list_(value_type))}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, (batch,), rejects = read_all(path, DataConfig(max_abs_value=max_abs_value))
    small = max_abs_value == 100.0
    assert batch.keys.column("id").to_pylist() == ([1] if small else [1, 2])
    np.testing.assert_array_equal(batch.values[0, :2, 0], [1.5, -2.0])
    if not small:
        assert batch.values[1, 0, 0] == 1000.0
    assert rejects.column("reason").to_pylist() == (["out_of_range"] if small else []) + ["non_finite", "non_finite"]
    if small:
        assert rejects.column("detail")[0].as_py() == "expected |value| <= 100, found 1000"
