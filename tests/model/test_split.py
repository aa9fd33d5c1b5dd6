"""The validation split: by key, or held out by time within each series of the long layout."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.config import DataConfig, TrainConfig
from seqae.data import ShardReader, resolve_shards
from seqae.errors import ConfigError
from seqae.train import choose_split, plan_data


def long_data(tmp_path, lengths: dict, name="s.parquet"):
    keys = np.concatenate([[k] * n for k, n in lengths.items()])
    times = np.concatenate([np.arange(n, dtype=np.int64) * 5 for n in lengths.values()])
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"k": keys, "t": times, "x": rng.normal(size=len(keys)).astype(np.float32)}),
                   tmp_path / name)
    return str(tmp_path)


def config(window=8, stride=2, **kw):
    return DataConfig(layout="long", key_column="k", time_column="t", feature_columns=("x",), window=window,
                      stride=stride, **kw)


def sides(data, cfg, train_cfg):
    """(split, {series: (train step times, validation step times, windows in the gap)})."""
    shards = resolve_shards(data)
    split = choose_split(shards, cfg, train_cfg, num_features=None, row_filter=None)
    out = {}
    for shard in shards:
        for batch, _ in ShardReader(shard, cfg, batch_size=7):
            side = split.assign(batch, cfg)
            for i, key in enumerate(batch.keys.column("k").to_pylist()):
                steps = set(batch.times[i, : batch.lengths[i]].tolist())
                train, val, gap = out.setdefault(key, (set(), set(), [0]))
                if side[i] == 0:
                    train |= steps
                elif side[i] == 1:
                    val |= steps
                else:
                    gap[0] += 1
    return split, out


@pytest.mark.parametrize("window,stride", [(8, 2), (8, 8), (5, 7), (1, 1), (16, 1)])
def test_time_split_holds_out_the_end_of_each_series_with_no_step_in_both(tmp_path, window, stride):
    data = long_data(tmp_path, {"a": 400, "b": 150, "c": 3})
    split, out = sides(data, config(window, stride), TrainConfig(validation_fraction=0.2))
    assert split.method == "time" and "too few" in split.reason
    for key in ("a", "b"):
        train, val, gap = out[key]
        assert val and train and not train & val
        assert max(train) < min(val)  # the end of the series, not a random part
        # the gap is the windows overlapping the held-out part: ceil(window / stride) - 1 of them
        assert gap[0] == (-(-window // stride) - 1 if stride < window else 0)
    assert "c" not in out or not out["c"][1]  # too short to give any window away


def test_auto_holds_out_whole_series_when_there_are_enough(tmp_path):
    data = long_data(tmp_path, {f"s{i}": 30 for i in range(40)})
    split, out = sides(data, config(), TrainConfig(validation_fraction=0.1))
    assert split.method == "key" and "40 series" in split.reason
    held = [k for k, (train, val, _) in out.items() if val]
    assert held and all(not out[k][0] for k in held)  # whole series on one side
    forced, _ = sides(data, config(), TrainConfig(validation_fraction=0.1, validation_split="time"))
    assert forced.method == "time" and forced.reason.startswith("asked")


def test_one_series_trains_with_a_validation_split_and_says_which(tmp_path):
    data = long_data(tmp_path, {"only": 500})
    plan = plan_data(data, config(), TrainConfig(validation_fraction=0.1))
    assert plan.split.method == "time" and plan.validation_rows > 0 and plan.gap_rows == 3 and not plan.warnings
    assert plan.train_rows + plan.validation_rows + plan.gap_rows == (500 - 8) // 2 + 1


def test_an_empty_validation_split_is_a_warning_with_the_reason(tmp_path):
    data = long_data(tmp_path, {"short": 12})  # 3 windows: a tenth of them is none
    plan = plan_data(data, config(), TrainConfig(validation_fraction=0.1))
    assert plan.validation_rows == 0
    assert plan.warnings and "no validation split" in plan.warnings[0] and "10 or more windows" in plan.warnings[0]
    off = plan_data(data, config(), TrainConfig(validation_fraction=0.0))
    assert off.split.method == "none" and "validation_fraction is 0" in off.warnings[0]


def test_time_split_needs_the_long_layout(tmp_path):
    pq.write_table(pa.table({"id": [1, 2], "values": [[1.0, 2.0], [3.0]]}), tmp_path / "s.parquet")
    with pytest.raises(ConfigError, match="'time' needs the long layout"):
        choose_split(resolve_shards(str(tmp_path)), DataConfig(), TrainConfig(validation_split="time"),
                     num_features=None, row_filter=None)
    with pytest.raises(ConfigError, match="validation_split"):
        TrainConfig(validation_split="random")


def test_no_training_windows_left_says_what_took_them(tmp_path):
    from seqae.errors import SeqaeError

    data = long_data(tmp_path, {"short": 14})  # 4 windows of 8 every 2: half held out, the gap takes the rest
    with pytest.raises(SeqaeError, match=r"no training windows: of 4 accepted, the time validation split holds 2 "
                                         r"and its gap 2 \(validation_fraction 0.5\)"):
        plan_data(data, config(), TrainConfig(validation_fraction=0.5, validation_split="time"))
