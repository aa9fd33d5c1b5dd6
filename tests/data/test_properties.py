"""Property tests for the data layer: any valid input round-trips exactly; any invalid row is
rejected with a reason, never dropped; counts always reconcile."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqae.data import DataConfig, ShardReader, resolve_shards

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)
BAD_VALUE = st.sampled_from([float("nan"), float("inf"), -float("inf"), 3.4e38, None])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_all(path, config, batch_size):
    (shard,) = resolve_shards(str(path))
    reader = ShardReader(shard, config, batch_size=batch_size)
    out, rejects = [], []
    for batch, rej in reader:
        keys = batch.keys.column(config.key_column).to_pylist()
        for i, key in enumerate(keys):
            out.append((key, batch.values[i, : batch.lengths[i]].copy(), int(batch.rows[i])))
        rejects.extend(rej.to_pylist())
    return out, rejects, reader.stats


@SETTINGS
@given(sequences=st.lists(st.lists(st.lists(FINITE, min_size=2, max_size=2), min_size=1, max_size=20), max_size=40),
       batch_size=st.integers(1, 17))
def test_valid_rows_round_trip_exactly(tmp_path_factory, sequences, batch_size):
    path = tmp_path_factory.mktemp("p") / "x.parquet"
    pq.write_table(pa.table({"id": pa.array(range(len(sequences)), pa.int64()),
                             "values": pa.array(sequences, pa.list_(pa.list_(pa.float32())))}), path)
    out, rejects, stats = read_all(path, DataConfig(), batch_size)
    assert rejects == [] and stats.rows_in == len(sequences) == stats.sequences_out
    assert [key for key, _, _ in out] == list(range(len(sequences)))
    for (key, values, row), seq in zip(out, sequences):
        assert row == key
        np.testing.assert_array_equal(values, np.asarray(seq, np.float32).reshape(-1, 2))


@SETTINGS
@given(rows=st.lists(st.one_of(
    st.lists(FINITE, min_size=1, max_size=12).map(lambda v: ("ok", v)),
    st.tuples(st.lists(FINITE, min_size=1, max_size=6), BAD_VALUE, st.lists(FINITE, max_size=6)).map(
        lambda t: ("bad", [*t[0], t[1], *t[2]])),
    st.just(("null", None)),
    st.just(("empty", [])),
), max_size=40), batch_size=st.integers(1, 9))
def test_every_invalid_row_is_rejected_with_a_reason_never_dropped(tmp_path_factory, rows, batch_size):
    path = tmp_path_factory.mktemp("p") / "x.parquet"
    pq.write_table(pa.table({"id": pa.array(range(len(rows)), pa.int64()),
                             "values": pa.array([v for _, v in rows], pa.list_(pa.float32()))}), path)
    out, rejects, stats = read_all(path, DataConfig(), batch_size)
    expected_bad = {i for i, (kind, _) in enumerate(rows) if kind != "ok"}
    assert {r["row"] for r in rejects} == expected_bad
    assert {key for key, _, _ in out} == set(range(len(rows))) - expected_bad
    assert stats.rows_in == len(rows) == len(out) + len(rejects)
    for r in rejects:
        kind, values = rows[r["row"]]
        assert r["reason"] and r["detail"] and r["key"] == str(r["row"])
        if kind == "null":
            assert r["reason"] == "null_sequence"
        elif kind == "empty":
            assert r["reason"] == "empty"
        else:
            bad = next(v for v in values if v is None or not math.isfinite(v) or abs(v) > 1e30)
            want = "null_value" if bad is None else "non_finite" if not math.isfinite(bad) else "out_of_range"
            assert r["reason"] == want
