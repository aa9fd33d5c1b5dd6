import math
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqae.data import DataConfig, ShardReader, resolve_shards
from seqae.errors import ConfigError, ContractError


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


def test_only_a_long_layout_config_is_cut_into_windows():
    assert DataConfig(layout="long", feature_columns=["x"], window=4).long_layout() == (("x",), 4)
    with pytest.raises(ConfigError, match=r"^layout: expected 'long' \(feature columns cut into windows\), "
                                          r"got 'sequence'$"):
        DataConfig().long_layout()


def test_missing_feature_column(tmp_path):
    table = pa.table({"series": ["a"], "ts": [0], "x": [1.0]})
    with pytest.raises(ContractError, match=r"column 'y': column is missing; expected a numeric feature column"):
        windows(tmp_path, table, window=2)


def one_feature(tmp_path, table, batch_size, **cfg):
    """``(windows, sorted rejects, stats)`` or the error message: what a read decides, batch size aside."""
    path = tmp_path / "long.parquet"
    pq.write_table(table, path)
    config = DataConfig(layout="long", key_column="series", time_column="ts", feature_columns=("x",), **cfg)
    reader = ShardReader(resolve_shards(str(path))[0], config, batch_size=batch_size)
    out, rejects = [], []
    try:
        for batch, rej in reader:
            for i in range(len(batch)):
                key = tuple(batch.keys.column(c)[i].as_py() for c in config.key_columns)
                out.append((key, batch.values[i, : batch.lengths[i], 0].tolist(), batch.times[i, : batch.lengths[i]].tolist(),
                            int(batch.rows[i])))
            rejects.extend(rej.to_pylist())
    except ContractError as exc:
        return str(exc)
    return out, sorted(rejects, key=lambda r: (r["row"], r["reason"], r["key"] or "")), reader.stats.to_dict()


@pytest.mark.parametrize("batch_size", [1, 3, 8, 16, 1000])
def test_time_going_back_across_a_read_batch_boundary_is_a_file_error(tmp_path, batch_size):
    """Times 0..7 then 4..11: the first eight steps fill two windows and leave no tail to compare with."""
    table = pa.table({"series": ["a"] * 16, "ts": list(range(8)) + list(range(4, 12)), "x": [1.0] * 16})
    assert one_feature(tmp_path, table, batch_size, window=4) == (
        f"{tmp_path / 'long.parquet'}: column 'ts': row 8: time does not increase within series 'a'; "
        "expected strictly increasing times within each series, found a time equal to or before the previous one. "
        "Sort the shard by (series, time) and remove duplicate steps"
    )


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
def test_nan_series_keys_and_times_are_rejected_as_null(tmp_path, batch_size):
    nan = float("nan")
    table = pa.table({"series": [1.0, 1.0, nan, nan, 1.0, None, 2.0, 2.0, 2.0],
                      "ts": pa.array([0.0, 1.0, 2.0, 3.0, 2.0, 9.0, 0.0, nan, 1.0]),
                      "x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]})
    out, rejects, stats = one_feature(tmp_path, table, batch_size, window=3)
    assert [(key, values) for key, values, _, _ in out] == [((1.0, 0.0, 2.0), [0.0, 1.0, 4.0]),
                                                            ((2.0, 0.0, 1.0), [6.0, 8.0])]
    assert [(r["row"], r["key"], r["column"], r["reason"], r["detail"]) for r in rejects] == [
        (2, "nan", "series", "null_key", "the key is NaN"),
        (3, "nan", "series", "null_key", "the key is NaN"),
        (5, None, "series", "null_key", "the key is null"),
        (7, "2", "ts", "null_time", "the time is NaN"),
    ]
    assert stats["rows_in"] == 9 and stats["rows_rejected"] == 4 and stats["sequences_out"] == 2


@st.composite
def long_rows(draw):
    """Series in (series, time) order, then perhaps damaged: null or NaN keys put in, a row moved,
    a stretch of rows repeated (time going back), a time repeated."""
    keys = draw(st.lists(st.sampled_from([1.0, 2.0, 3.0, 4.0]), max_size=4, unique=True))
    value = st.one_of(st.floats(-10, 10, width=32), st.just(float("nan")))
    rows = []
    for key in keys:
        for time in sorted(draw(st.sets(st.integers(0, 30), max_size=12))):
            rows.append((key, time, draw(value)))
    for at, key, time in draw(st.lists(st.tuples(st.integers(0, len(rows)), st.sampled_from([None, float("nan")]),
                                                 st.integers(0, 30)), max_size=3)):
        rows.insert(min(at, len(rows)), (key, time, 0.0))
    if rows and draw(st.booleans()):
        i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(rows) - 1))
        rows.insert(j, rows.pop(i))
    if rows and draw(st.booleans()):
        a = draw(st.integers(0, len(rows) - 1))
        b = draw(st.integers(a, min(len(rows), a + 6)))
        rows[b:b] = rows[a:b]
    if rows and draw(st.booleans()):
        i = draw(st.integers(0, len(rows) - 1))
        rows.insert(i + 1, (rows[i][0], rows[i][1], 0.0))
    return rows


def in_order(rows) -> bool:
    """The contract, said plainly: each series' rows together, times strictly increasing."""
    seen, previous = set(), None
    for key, time, _ in rows:
        if key is None or math.isnan(key):
            continue
        if previous is not None and key == previous[0]:
            if time <= previous[1]:
                return False
        elif key in seen:
            return False
        seen.add(key)
        previous = (key, time)
    return True


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=long_rows(), window=st.integers(1, 4), stride=st.integers(1, 5),
       partial_windows=st.sampled_from(["keep", "drop"]))
def test_the_read_batch_size_never_changes_what_is_accepted_or_rejected(tmp_path_factory, rows, window, stride,
                                                                        partial_windows):
    table = pa.table({"series": pa.array([r[0] for r in rows], pa.float64()),
                      "ts": pa.array([r[1] for r in rows], pa.int64()),
                      "x": pa.array([r[2] for r in rows], pa.float32())})
    tmp_path = tmp_path_factory.mktemp("long")
    cfg = {"window": window, "stride": stride, "partial_windows": partial_windows}
    whole = one_feature(tmp_path, table, max(len(rows), 1), **cfg)
    assert isinstance(whole, tuple) == in_order(rows), whole
    for batch_size in range(1, len(rows)):
        assert one_feature(tmp_path, table, batch_size, **cfg) == whole, batch_size


@pytest.mark.parametrize("value_type, max_abs_value", [(pa.float16(), 1e30), (pa.float32(), 1e300), (pa.float16(), 100.0)])
def test_narrow_floats_and_wide_limits_window_without_a_numpy_warning(tmp_path, value_type, max_abs_value):
    table = pa.table({"series": ["a"] * 6, "ts": list(range(6)),
                      "x": pa.array([0.5, 1.5, 2.5, 1000.0, 4.0, 5.0], value_type)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, rejects, _ = one_feature(tmp_path, table, 2, window=3, max_abs_value=max_abs_value)
    assert out[0][1] == [0.5, 1.5, 2.5]
    assert [r["reason"] for r in rejects] == (["out_of_range"] if max_abs_value == 100.0 else [])
    assert len(out) == (1 if max_abs_value == 100.0 else 2)
