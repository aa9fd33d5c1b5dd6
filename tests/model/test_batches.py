"""Training batches: built in numpy from the in-memory cache or streamed from the shards."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from seqae.config import DataConfig, TrainConfig
from seqae.train import make_dataset, plan_data, shuffled_batches


def chunks_of(rows: int, width=2, seed=0, size=7):
    """Row chunks padded to their own longest, as the reader yields them; row i holds i everywhere."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 9, size=rows).astype(np.int32)
    out = []
    for a in range(0, rows, size):
        n = lengths[a:a + size]
        v = np.zeros((len(n), n.max(), width), np.float32)
        for i, m in enumerate(n):
            v[i, :m] = a + i
        out.append((v, n))
    return out, lengths


def rows_seen(batches, width=2):
    seen = []
    for v, n in batches:
        assert v.shape == (len(n), n.max(), width)  # each batch cut to its own longest row
        for i, m in enumerate(n):
            assert np.all(v[i, :m] == v[i, 0, 0]) and np.all(v[i, m:] == 0)
            seen.append((int(v[i, 0, 0]), int(m)))
    return seen


@pytest.mark.parametrize("buffer", [0, 10, 1000])
def test_every_row_once_whole_batches_but_the_last(buffer):
    chunks, lengths = chunks_of(103)
    batches = list(shuffled_batches(iter(chunks), 16, width=2, buffer=buffer, rng=np.random.default_rng(1)))
    assert [len(n) for _, n in batches] == [16] * 6 + [7]
    seen = rows_seen(batches)
    assert sorted(seen) == [(i, int(m)) for i, m in enumerate(lengths)]
    assert [i for i, _ in seen] != list(range(103))  # shuffled


def test_no_rng_keeps_the_order_and_a_seed_repeats():
    chunks, lengths = chunks_of(50)
    seen = rows_seen(shuffled_batches(iter(chunks), 8, width=2))
    assert seen == [(i, int(m)) for i, m in enumerate(lengths)]
    once = rows_seen(shuffled_batches(iter(chunks), 8, width=2, buffer=50, rng=np.random.default_rng(3)))
    again = rows_seen(shuffled_batches(iter(chunks), 8, width=2, buffer=50, rng=np.random.default_rng(3)))
    assert once == again


def test_a_block_shuffles_only_within_itself():
    chunks, _ = chunks_of(60, size=10)
    seen = [i for i, _ in rows_seen(shuffled_batches(iter(chunks), 10, width=2, buffer=30,
                                                     rng=np.random.default_rng(0)))]
    assert sorted(seen[:30]) == list(range(30)) and sorted(seen[30:]) == list(range(30, 60))


@pytest.fixture()
def sine_shards(tmp_path, make_sine_table):
    table = make_sine_table(n=90)
    for i in range(3):
        pq.write_table(table.slice(i * 30, 30), tmp_path / f"part-{i}.parquet")
    return str(tmp_path)


def epoch_rows(plan, train_config, validation=False):
    ds = make_dataset(plan, DataConfig(), train_config, validation=validation)
    return [(tuple(np.round(v[: n], 5).ravel()), int(n)) for x, _ in ds.as_numpy_iterator()
            for v, n in zip(x["values"], x["lengths"])]


def test_cached_and_streamed_epochs_hold_the_same_rows(sine_shards):
    cached_cfg = TrainConfig(batch_size=8, read_batch_size=11)
    streamed_cfg = TrainConfig(batch_size=8, read_batch_size=11, cache_mb=0)
    cached, streamed = plan_data(sine_shards, DataConfig(), cached_cfg), plan_data(sine_shards, DataConfig(), streamed_cfg)
    assert streamed.cache is None
    assert len(cached.cache[0].lengths) == cached.train_rows and len(cached.cache[1].lengths) == cached.validation_rows
    for validation in (False, True):
        a, b = epoch_rows(cached, cached_cfg, validation), epoch_rows(streamed, streamed_cfg, validation)
        assert sorted(a) == sorted(b) and len(a) == (cached.validation_rows if validation else cached.train_rows)
    # unshuffled, the cache gives the rows in the order they were read, as streaming does
    ordered = TrainConfig(batch_size=8, read_batch_size=11, shuffle=False)
    assert epoch_rows(plan_data(sine_shards, DataConfig(), ordered), ordered) == epoch_rows(
        plan_data(sine_shards, DataConfig(), TrainConfig(batch_size=8, read_batch_size=11, shuffle=False, cache_mb=0)),
        ordered)
    # each epoch draws a new order
    ds = make_dataset(cached, DataConfig(), cached_cfg, validation=False)
    first, second = ([float(v[0, 0]) for x, _ in ds.as_numpy_iterator() for v in x["values"]] for _ in range(2))
    assert sorted(first) == sorted(second) and first != second


def test_data_over_the_budget_streams(tmp_path, make_sine_table):
    pq.write_table(make_sine_table(n=40, length=12), tmp_path / "small.parquet")
    plan = plan_data(str(tmp_path), DataConfig(), TrainConfig(cache_mb=1))
    assert plan.cache is not None and plan.cache[0].values.shape[1:] == (plan.longest, 1)
    # 100 rows of up to 4000 steps, padded, take about 1.5 MiB: over a 1 MiB budget
    pq.write_table(make_sine_table(n=100, length=4000), tmp_path / "large.parquet")
    plan = plan_data(str(tmp_path), DataConfig(), TrainConfig(cache_mb=1))
    assert plan.cache is None and plan.train_rows + plan.validation_rows == 140
