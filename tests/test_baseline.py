"""The nearest-training-window baseline: its bank and distances against a brute-force count."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from seqae.baseline import NearestWindows
from seqae.data import DataConfig
from seqae.errors import SeqaeError

WINDOW = 5


def long_data(folder, series: dict[str, np.ndarray]):
    """One shard of the long layout: two features per step (x and 10 * x)."""
    folder.mkdir()
    keys, times, x = [], [], []
    for key, values in series.items():
        keys += [key] * len(values)
        times += list(range(len(values)))
        x += list(values)
    x = np.asarray(x, dtype=np.float32)
    pq.write_table(pa.table({"s": keys, "t": np.asarray(times, np.int64), "x": x, "y": 10 * x}),
                   folder / "part.parquet")
    return str(folder)


def config(**changes):
    return DataConfig(layout="long", key_column="s", time_column="t", feature_columns=("x", "y"), window=WINDOW,
                      stride=3, **changes)


MEAN, STD = np.array([1.0, 10.0]), np.array([2.0, 20.0])
NORMALIZATION = {"mean": MEAN.tolist(), "std": STD.tolist()}


def windows_of(values: np.ndarray) -> np.ndarray:
    """Every window at stride 1, standardised and flattened step by step (x, y, x, y, ...)."""
    steps = (np.stack([values, 10 * values], axis=1) - MEAN) / STD
    return sliding_window_view(steps, (WINDOW, 2))[:, 0].reshape(-1, WINDOW * 2)


def test_the_bank_is_every_window_at_stride_1_standardised_per_series(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12).astype(np.float32), rng.normal(size=8).astype(np.float32)
    bank = NearestWindows.build(long_data(tmp_path / "d", {"a": a, "b": b}), config(), 2, NORMALIZATION)
    expected = np.concatenate([windows_of(a), windows_of(b)])  # no window across the two series
    assert bank.bank.shape == (8 + 4, WINDOW * 2) and bank.stride == 1 and bank.windows_read == 12
    np.testing.assert_allclose(bank.bank, expected, rtol=1e-6)


def test_a_bank_over_its_limit_keeps_every_kth_window(tmp_path):
    values = np.arange(44, dtype=np.float32)  # 40 windows
    bank = NearestWindows.build(long_data(tmp_path / "d", {"a": values}), config(), 2, NORMALIZATION,
                                max_windows=10, read_batch_size=7)
    assert bank.stride == 4 and bank.windows_read == 40
    np.testing.assert_allclose(bank.bank, windows_of(values)[::4], rtol=1e-6)
    assert bank.describe()["bank_windows"] == 10 and bank.describe()["bank_stride"] == 4


def test_distances_are_the_nearest_bank_windows_mean_squared_difference(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.normal(size=30).astype(np.float32)
    bank = NearestWindows.build(long_data(tmp_path / "d", {"a": train}), config(), 2, NORMALIZATION)
    new = rng.normal(size=(6, WINDOW)).astype(np.float32)
    new[2] = train[7:7 + WINDOW]  # a copy of a training window: distance 0
    values = np.stack([new, 10 * new], axis=2)
    lengths = np.array([WINDOW, WINDOW, WINDOW, 3, WINDOW, 3], np.int32)  # two shorter trailing windows
    values[lengths < WINDOW, 3:] = 0.0  # padding
    got = bank.distances(values, lengths)
    reference = windows_of(train)
    for i, length in enumerate(lengths):
        w = ((values[i, :length] - MEAN) / STD).reshape(-1)
        expected = ((reference[:, :length * 2] - w) ** 2).mean(axis=1).min()  # the first steps of each window
        assert got[i] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert got[2] == pytest.approx(0.0, abs=1e-9)


def test_the_baseline_needs_a_long_layout_and_a_full_window(tmp_path):
    sequence = DataConfig()
    with pytest.raises(SeqaeError, match="needs a long-layout model"):
        NearestWindows.build(str(tmp_path), sequence, 1, {"mean": [0.0], "std": [1.0]})
    short = long_data(tmp_path / "d", {"a": np.ones(WINDOW - 1, np.float32)})
    with pytest.raises(SeqaeError, match="no full window of 5 steps"):
        NearestWindows.build(short, config(), 2, NORMALIZATION)


def test_the_default_limit_is_the_banks_bytes_and_chunks_do_not_change_distances(tmp_path, monkeypatch):
    import seqae.baseline as baseline

    values = np.arange(44, dtype=np.float32)  # 40 windows of 5 steps, 2 features: 80 bytes each, 40 of norms
    data = long_data(tmp_path / "d", {"a": values})
    whole = NearestWindows.build(data, config(), 2, NORMALIZATION)
    monkeypatch.setattr(baseline, "MAX_BANK_BYTES", 120 * 10)
    thinned = NearestWindows.build(data, config(), 2, NORMALIZATION)
    assert (whole.stride, len(whole.bank)) == (1, 40) and (thinned.stride, len(thinned.bank)) == (4, 10)
    new = np.random.default_rng(2).normal(size=(9, WINDOW, 2)).astype(np.float32)
    lengths = np.full(9, WINDOW, np.int32)
    expected = whole.distances(new, lengths)
    monkeypatch.setattr(baseline, "CHUNK_VALUES", 45)  # one window at a time against the 40
    np.testing.assert_allclose(whole.distances(new, lengths), expected, rtol=1e-12)


def test_rejected_windows_are_counted_and_named_when_none_is_left(tmp_path):
    values = np.arange(20, dtype=np.float32)
    values[8] = np.nan  # rejects the 5 windows over step 8 of 16
    bank = NearestWindows.build(long_data(tmp_path / "d", {"a": values}), config(), 2, NORMALIZATION)
    assert bank.describe()["windows_rejected"] == 5 and bank.windows_read == len(bank.bank) == 11
    values[::3] = np.nan  # every window holds a NaN
    with pytest.raises(SeqaeError, match=r"of 20 rows read, 0 row\(s\) and 16 window\(s\) were rejected "
                                         r"\(reasons: non_finite: 16\)"):
        NearestWindows.build(long_data(tmp_path / "e", {"a": values}), config(), 2, NORMALIZATION)


def test_the_bank_grows_as_windows_arrive_and_a_large_limit_allocates_nothing_up_front(tmp_path):
    values = np.random.default_rng(3).normal(size=3000).astype(np.float32)
    data = long_data(tmp_path / "d", {"a": values[:1800], "b": values[1800:]})
    bank = NearestWindows.build(data, config(), 2, NORMALIZATION, max_windows=10 ** 12, read_batch_size=500)
    expected = np.concatenate([windows_of(values[:1800]), windows_of(values[1800:])])
    assert bank.stride == 1 and bank.bank.shape == expected.shape and bank.bank.base is None  # its own memory
    np.testing.assert_allclose(bank.bank, expected, rtol=1e-6)
    thinned = NearestWindows.build(data, config(), 2, NORMALIZATION, max_windows=1500, read_batch_size=500)
    assert thinned.stride == 2
    np.testing.assert_allclose(thinned.bank, expected[np.flatnonzero(np.arange(len(expected)) % 2 == 0)], rtol=1e-6)


def test_reference_distances_leave_out_the_windows_that_overlap_each_one(tmp_path, monkeypatch):
    """What the step threshold is fitted on: the data's windows at the model's stride, each against the
    bank without the windows of its own series that share a step with it (windows of another series all
    count), a NaN between series; read apart from the bank, so a thinned bank changes only the bank."""
    import seqae.baseline as baseline

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=30).astype(np.float32), rng.normal(size=20).astype(np.float32)
    data = long_data(tmp_path / "d", {"a": a, "b": b})
    wa, wb = windows_of(a), windows_of(b)  # 26 and 16 windows at stride 1

    def expected(bank_rows):
        out = []
        for series, offset in ((wa, 0), (wb, len(wa))):
            if out:
                out.append(np.nan)
            for i in range(0, len(series), 3):  # the model's stride
                others = [j for j in bank_rows if not (offset <= j < offset + len(series) and abs(j - offset - i) < WINDOW)]
                out.append(((np.concatenate([wa, wb])[others] - series[i]) ** 2).mean(axis=1).min())
        return np.array(out)

    bank = NearestWindows.build(data, config(), 2, NORMALIZATION, read_batch_size=7)
    got, scored = bank.reference_distances(data, config(), read_batch_size=5)
    np.testing.assert_allclose(got, expected(range(26 + 16)), rtol=1e-9)
    assert scored["windows"] == 9 + 6 and scored["stride"] == 3 and scored["blocks"] == "all"
    # a bank thinned to every 4th window read: the same query windows, against what the bank kept
    thinned = NearestWindows.build(data, config(), 2, NORMALIZATION, max_windows=11)
    assert thinned.stride == 4
    got, _ = thinned.reference_distances(data, config())
    np.testing.assert_allclose(got, expected(range(0, 42, 4)), rtol=1e-9)
    # more windows than asked for: blocks of consecutive ones spread over the data, a NaN between blocks
    monkeypatch.setattr(baseline, "REFERENCE_BLOCK", 2)
    got, scored = bank.reference_distances(data, config(), max_windows=8)
    full = expected(range(42))
    # windows 0-8 of a and 9-14 of b (full has a NaN at 9 between them): blocks 0-1, 4-5, 8-9, 12-13
    kept = np.r_[full[[0, 1]], np.nan, full[[4, 5]], np.nan, full[[8]], np.nan, full[[10]], np.nan, full[[13, 14]]]
    np.testing.assert_allclose(got, kept, rtol=1e-9)
    assert scored["blocks"] == "2 windows in 2"


def test_the_onnx_bank_gives_the_float64_distances_for_full_and_shorter_windows(tmp_path):
    """``neighbours.onnx`` (what the embed job runs) against ``distances`` (float64, numpy), which the
    tests above check against brute force: full windows, shorter trailing ones, a batch narrower
    than the window, and windows far from and equal to a bank window."""
    import onnxruntime as ort

    from seqae.baseline import INPUT_WINDOWS

    rng = np.random.default_rng(3)
    train = rng.normal(size=60).astype(np.float32)
    bank = NearestWindows.build(long_data(tmp_path / "d", {"a": train}), config(), 2, NORMALIZATION)
    proto = bank.to_onnx({"seqae.model_id": "m"})
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["seqae.graph"] == "neighbours" and meta["seqae.bank_windows"] == str(len(bank.bank))
    x = rng.normal(size=(9, WINDOW)).astype(np.float32)
    x[0] = train[10:10 + WINDOW]  # a bank window itself: distance 0
    values = np.stack([x, 10 * x], axis=2)
    for lengths, width in ((np.full(9, WINDOW), WINDOW), (np.array([5, 4, 3, 1, 2, 5, 5, 4, 3]), WINDOW),
                           (np.array([3, 2, 1, 3, 3, 2, 1, 2, 3]), 3)):
        narrow = values[:, :width].copy()
        windows, used = bank.prepare(narrow, lengths, np.float32)
        got = session.run(["nearest_distance"], {INPUT_WINDOWS: windows, "lengths": used})[0]
        want = bank.distances(narrow, lengths)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert want[0] < 1e-5 < want[1:].min()
