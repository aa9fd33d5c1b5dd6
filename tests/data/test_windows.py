import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.data import DataConfig, ShardReader, resolve_shards
from seqae.errors import ContractError


def long_table(series_lengths, features=("x", "y")):
    keys, times, cols = [], [], {f: [] for f in features}
    for s, n in series_lengths.items():
        for t in range(n):
            keys.append(s)
            times.append(t * 10)
            for j, f in enumerate(features):
                cols[f].append(float(t + 100 * j))
    return pa.table({"series": keys, "ts": pa.array(times, pa.int64()), **{f: pa.array(v, pa.float32()) for f, v in cols.items()}})


def windows(tmp_path, table, batch_size=1000, **cfg):
    pq.write_table(table, tmp_path / "long.parquet")
    config = DataConfig(layout="long", key_column="series", time_column="ts", feature_columns=("x", "y"), **cfg)
    reader = ShardReader(resolve_shards(str(tmp_path / "long.parquet"))[0], config, batch_size=batch_size)
    out, rejects = [], []
    for batch, rej in reader:
        for i in range(len(batch)):
            key = tuple(batch.keys.column(c)[i].as_py() for c in config.key_columns)
            out.append((key, batch.values[i, : batch.lengths[i]].copy()))
        rejects.append(rej)
    return reader.stats, out, pa.concat_tables(rejects)


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_windows_every_stride_with_partial_tail(tmp_path, batch_size):
    stats, out, _ = windows(tmp_path, long_table({"a": 7, "b": 2}), batch_size=batch_size, window=4, stride=2)
    assert [k for k, _ in out] == [("a", 0, 30), ("a", 20, 50), ("a", 40, 60), ("b", 0, 10)]
    np.testing.assert_array_equal(out[1][1], [[2, 102], [3, 103], [4, 104], [5, 105]])
    assert len(out[2][1]) == 3 and len(out[3][1]) == 2
    assert stats.rows_in == 9 and stats.steps_windowed == 9 and stats.steps_uncovered == 0
    assert stats.sequences_out == 4


def test_partial_windows_drop_counts_uncovered_steps(tmp_path):
    stats, out, _ = windows(tmp_path, long_table({"a": 7, "b": 2}), window=4, partial_windows="drop")
    assert [k for k, _ in out] == [("a", 0, 30)]
    assert stats.steps_uncovered == 3 + 2


def test_stride_larger_than_window_counts_skipped_steps(tmp_path):
    stats, out, _ = windows(tmp_path, long_table({"a": 10}), batch_size=2, window=2, stride=4, partial_windows="drop")
    assert [k for k, _ in out] == [("a", 0, 10), ("a", 40, 50), ("a", 80, 90)]
    assert stats.steps_uncovered == 10 - 6


def test_window_with_nan_is_rejected_and_null_keys_are_rejected_rows(tmp_path):
    table = long_table({"a": 6})
    x = table.column("x").to_pylist()
    x[4] = float("nan")
    table = table.set_column(2, "x", pa.array(x, pa.float32()))
    table = pa.concat_tables([table, pa.table({"series": pa.array([None], pa.string()), "ts": [99],
                                               "x": pa.array([1.0], pa.float32()), "y": pa.array([1.0], pa.float32())})])
    stats, out, rejects = windows(tmp_path, table, window=3)
    assert [k for k, _ in out] == [("a", 0, 20)]
    assert rejects.column("reason").to_pylist() == ["null_key", "non_finite"]
    assert rejects.column("key").to_pylist() == [None, "a/30/50"]
    assert rejects.column("column").to_pylist() == ["series", "x"]
    assert stats.rows_in == 7 and stats.rows_rejected == 1 and stats.windows_rejected == 1


def test_unsorted_time_is_a_file_error_with_row_and_column(tmp_path):
    table = pa.table({"series": ["a", "a", "a"], "ts": [0, 20, 10], "x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ContractError) as err:
        windows(tmp_path, table, window=2)
    assert str(err.value) == (
        f"{tmp_path / 'long.parquet'}: column 'ts': row 2: time does not increase within series 'a'; "
        "expected strictly increasing times within each series, found a time equal to or before the previous one. "
        "Sort the shard by (series, time) and remove duplicate steps"
    )


def test_series_split_in_two_runs_is_a_file_error(tmp_path):
    table = pa.table({"series": ["a", "b", "a"], "ts": [0, 0, 1], "x": [1.0] * 3, "y": [1.0] * 3})
    with pytest.raises(ContractError, match=r"the rows of series 'a' are not contiguous \(row 2\)"):
        windows(tmp_path, table, window=2)


def test_missing_feature_column(tmp_path):
    table = pa.table({"series": ["a"], "ts": [0], "x": [1.0]})
    with pytest.raises(ContractError, match=r"column 'y': column is missing; expected a numeric feature column"):
        windows(tmp_path, table, window=2)
