"""Per-timestamp scores: the streaming fold against a brute-force reference over random windows."""

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.data import DataConfig, ShardReader, resolve_shards
from seqae.infer.steps import StepScores
from seqae.thresholds import covering_runs


def random_long_table(rng, n_series, key_type):
    keys, times, values = [], [], []
    for s in range(n_series):
        n = int(rng.integers(1, 40))
        t = np.cumsum(rng.integers(1, 4, size=n)) + 1000 * s  # irregular, increasing
        keys += [s if key_type == "int" else f"series-{s}"] * n
        times.append(t)
        v = rng.normal(size=n).astype(np.float32)
        v[rng.random(n) < 0.03] = np.nan  # a few windows get rejected
        values.append(v)
    return pa.table({"k": keys, "t": pa.array(np.concatenate(times), pa.int64()), "x": np.concatenate(values)})


def window_error(key, start, length):
    """A deterministic pseudo error per window step, known to both sides."""
    seed = hash((str(key), int(start))) % 2**32
    return np.random.default_rng(seed).random(length).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_streaming_fold_equals_brute_force(tmp_path, seed):
    # Odd seeds pass each window's error; even seeds leave it to the fold (its step errors' mean).
    rng = np.random.default_rng(seed)
    table = random_long_table(rng, int(rng.integers(1, 6)), "int" if seed % 2 else "str")
    pq.write_table(table, tmp_path / "s.parquet")
    window = int(rng.integers(1, 9))
    config = DataConfig(layout="long", key_column="k", time_column="t", feature_columns=("x",), window=window,
                        stride=int(rng.integers(1, window + 3)), partial_windows=["keep", "drop"][seed % 2])
    reader = ShardReader(resolve_shards(str(tmp_path / "s.parquet"))[0], config,
                         batch_size=int(rng.integers(1, 30)))
    fold = StepScores(table.schema.field("k").type)
    expected: dict[tuple, list[float]] = defaultdict(list)
    expected_windows: dict[tuple, list[float]] = defaultdict(list)
    got = []
    for batch, _ in reader:
        errors = np.full(batch.values.shape[:2], np.nan, np.float32)  # padding must never count
        windows = np.zeros(len(batch))
        keys = batch.keys.column("k").to_pylist()
        for i, (key, start, n) in enumerate(zip(keys, batch.keys.column("window_start").to_pylist(), batch.lengths)):
            errors[i, :n] = window_error(key, start, int(n))
            windows[i] = 10 + i if seed % 2 else np.mean(errors[i, :n], dtype=np.float64)
            for t, e in zip(batch.times[i, :n], errors[i, :n]):
                expected[(key, int(t))].append(float(e))
                expected_windows[(key, int(t))].append(windows[i])
        got.append(fold.add(batch, errors, windows) if seed % 2 else fold.add(batch, errors))
    got.append(fold.finish())
    rows = [(k, int(t), m, x, w, s, lo) for part in got for k, t, m, x, w, s, lo in
            zip(part.keys.to_pylist(), part.times, part.mean, part.max, part.windows, part.window_mean,
                part.window_min)]
    assert [(k, t) for k, t, *_ in rows] == sorted(expected, key=lambda kt: (table.column("k").to_pylist().index(kt[0]),
                                                                              kt[1]))
    for key, t, mean, maximum, count, window_mean, window_min in rows:
        errors = expected[(key, t)]
        assert count == len(errors)
        assert mean == pytest.approx(np.mean(errors), rel=1e-5)
        assert maximum == pytest.approx(max(errors))
        assert window_mean == pytest.approx(np.mean(expected_windows[(key, t)]), rel=1e-5)
        assert window_min == pytest.approx(min(expected_windows[(key, t)]), rel=1e-6)


@pytest.mark.parametrize(("window", "stride"), [(8, 1), (8, 2), (10, 4), (7, 3), (4, 4), (3, 5)])
def test_covering_runs_are_the_window_counts_of_steps_away_from_the_ends(window, stride):
    # What fit_steps builds held-out step scores from must be what the fold sees inside a series.
    starts = np.arange(0, 200, stride)
    counts = {int(((starts <= t) & (starts + window > t)).sum()) for t in range(window + stride, 150)}
    assert counts - {0} == set(covering_runs(window, stride))  # 0: steps between windows get no row


def test_memory_is_one_window_not_the_series(tmp_path):
    n, window = 20_000, 16
    table = pa.table({"k": np.zeros(n, np.int64), "t": np.arange(n, dtype=np.int64), "x": np.ones(n, np.float32)})
    pq.write_table(table, tmp_path / "s.parquet")
    config = DataConfig(layout="long", key_column="k", time_column="t", feature_columns=("x",), window=window, stride=1)
    fold = StepScores(pa.int64())
    written = 0
    for batch, _ in ShardReader(resolve_shards(str(tmp_path / "s.parquet"))[0], config, batch_size=1000):
        written += len(fold.add(batch, np.ones(batch.values.shape[:2], np.float32)))
        assert fold._pending is None or len(fold._pending.times) < window
    last = fold.finish()
    assert written + len(last) == n
    assert last.windows.tolist()[-1] == 1 and set(last.windows.tolist()) <= set(range(1, window + 1))


@pytest.mark.parametrize("seed", range(12))
def test_uncovered_steps_are_exactly_those_no_window_covers(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    table = random_long_table(rng, int(rng.integers(1, 5)), "int")
    table = table.set_column(2, "x", pa.array(np.nan_to_num(table.column("x").to_numpy()), pa.float32()))
    pq.write_table(table, tmp_path / "s.parquet")
    window = int(rng.integers(1, 9))
    config = DataConfig(layout="long", key_column="k", time_column="t", feature_columns=("x",), window=window,
                        stride=int(rng.integers(1, 2 * window + 3)), partial_windows=["keep", "drop"][seed % 2])
    reader = ShardReader(resolve_shards(str(tmp_path / "s.parquet"))[0], config, batch_size=int(rng.integers(1, 30)))
    covered = set()
    for batch, _ in reader:
        for i, key in enumerate(batch.keys.column("k").to_pylist()):
            covered |= {(key, int(t)) for t in batch.times[i, : batch.lengths[i]]}
    assert reader.stats.steps_uncovered == table.num_rows - len(covered)
