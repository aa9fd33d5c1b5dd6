"""Thresholds on synthetic errors with known tails: the false-alarm rate lands where asked; threshold.json
read back is checked field by field and against its checksum."""

import hashlib
import json
import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from seqae.errors import ConfigError, SeqaeError
from seqae.thresholds import Threshold, ThresholdConfig, ThresholdFileError, canonical_sha256

TAILS = {
    "exponential": stats.expon(),
    "lognormal": stats.lognorm(s=1.0),
    "pareto (heavy)": stats.pareto(b=3.0),
}


@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("method, rate", [("percentile", 0.01), ("pot", 0.01), ("pot", 0.001)])
def test_the_false_alarm_rate_lands_where_asked(tail, method, rate):
    dist = TAILS[tail]
    fitted = Threshold(ThresholdConfig(method=method, false_alarm_rate=rate)).fit(dist.rvs(20_000, random_state=1))
    true_rate = float(dist.sf(fitted.threshold_))  # the rate on infinitely many new normal errors
    assert rate / 1.6 < true_rate < rate * 1.6, (fitted.threshold_, true_rate)


def test_pot_stays_calibrated_where_few_errors_are_above_the_threshold():
    """1e-3 of 1000 rows is one row: the empirical quantile rests on it, the fitted tail on 100."""
    dist = TAILS["lognormal"]
    pot, empirical = [], []
    for seed in range(20):
        errors = dist.rvs(1000, random_state=seed)
        for method, ratios in (("pot", pot), ("percentile", empirical)):
            fitted = Threshold(ThresholdConfig(method=method, false_alarm_rate=1e-3, tail_start=0.9)).fit(errors)
            ratios.append(dist.sf(fitted.threshold_) / 1e-3)
    assert 0.5 < np.median(pot) < 2.5
    assert abs(np.log(np.median(pot))) < abs(np.log(np.median(empirical)))  # closer to the asked rate


def test_score_is_a_calibrated_tail_probability():
    dist = TAILS["lognormal"]
    fitted = Threshold(ThresholdConfig(method="pot", false_alarm_rate=0.01)).fit(dist.rvs(20_000, random_state=3))
    new = dist.rvs(100_000, random_state=4)
    scores = fitted.score(new)
    assert scores.min() >= 0 and scores.max() <= 1
    for q in (0.5, 0.9, 0.99):  # P(score > q) for normal data is about 1 - q
        assert abs((scores > q).mean() - (1 - q)) < 0.25 * (1 - q) + 0.002
    assert fitted.predict(new).mean() == pytest.approx(0.01, rel=0.3)


def test_contamination_leaves_the_anomalies_out_of_the_fit():
    rng = np.random.default_rng(5)
    normal, anomalies = rng.exponential(size=9_500), rng.exponential(size=500) + 20
    clean = Threshold(ThresholdConfig(method="percentile", false_alarm_rate=0.01)).fit(normal)
    mixed = Threshold(ThresholdConfig(method="percentile", false_alarm_rate=0.01, contamination=0.05)).fit(
        np.concatenate([normal, anomalies]))
    assert mixed.threshold_ == pytest.approx(clean.threshold_, rel=0.05)
    assert mixed.predict(anomalies).all()


def test_round_trip_and_errors(tmp_path):
    fitted = Threshold(ThresholdConfig(method="pot")).fit(np.random.default_rng(6).exponential(size=1000))
    fitted.save(tmp_path)
    loaded = Threshold.load(tmp_path)
    assert loaded.threshold_ == fitted.threshold_ and loaded.fingerprint() == fitted.fingerprint()
    np.testing.assert_array_equal(loaded.score([0.1, 3.0, 50.0]), fitted.score([0.1, 3.0, 50.0]))
    assert Threshold.load(tmp_path / "nothing") is None
    with pytest.raises(SeqaeError, match="expected at least 20 finite errors to fit on, got 5"):
        Threshold().fit(np.ones(5))
    with pytest.raises(SeqaeError, match="not fitted"):
        Threshold().predict([1.0])
    with pytest.raises(ConfigError, match=r"^method: expected 'auto', 'percentile' or 'pot', got 'iqr'$"):
        ThresholdConfig(method="iqr")
    with pytest.raises(ConfigError, match=r"^false_alarm_rate: expected a value in \(0, 0.5\), got 0$"):
        ThresholdConfig(false_alarm_rate=0)


def test_identical_errors_say_what_was_found_and_what_to_do():
    for method in ("pot", "percentile"):
        with pytest.raises(SeqaeError, match=r"^threshold: all 100 errors equal 0\.5; expected errors that vary \(a "
                                             r"threshold separates the larger ones\): check that the rows differ"):
            Threshold(ThresholdConfig(method=method)).fit(np.full(100, 0.5))
    # Ties at the tail start: how many errors are above it, and how many equal it.
    with pytest.raises(SeqaeError, match=r"pot needs at least 10 errors above the tail start \(quantile 0\.95\); 2 "
                                         r"of 100 errors are above it \(0\.5; 98 errors equal it\)\. Fit on more rows, "
                                         r"lower --tail-start, or use the empirical percentile"):
        Threshold(ThresholdConfig(method="pot")).fit(np.r_[np.full(98, 0.5), 1.0, 2.0])


def test_auto_fits_a_tail_where_there_is_one_and_the_percentile_where_there_is_not(tmp_path, caplog):
    rng = np.random.default_rng(11)
    many, few = rng.exponential(size=2000), rng.exponential(size=130)  # 100 and 7 errors above the 0.95 quantile
    auto, pot = Threshold().fit(many), Threshold(ThresholdConfig(method="pot")).fit(many)
    assert ThresholdConfig().method == "auto" and auto.method_ == "pot"
    assert auto.threshold_ == pot.threshold_ and auto.tail_ == pot.tail_
    with pytest.raises(SeqaeError, match=r"pot needs at least 10 errors above the tail start \(quantile 0\.95\); 7 of "
                                         r"130 errors are above it .*\(--method percentile, or auto\)$"):
        Threshold(ThresholdConfig(method="pot")).fit(few)
    with caplog.at_level("INFO", logger="seqae.thresholds"):
        small = Threshold().fit(few)
    assert small.method_ == "percentile" and small.tail_ is None
    assert small.threshold_ == Threshold(ThresholdConfig(method="percentile")).fit(few).threshold_
    assert "7 of 130 errors are above it" in caplog.text and "the empirical percentile instead of pot" in caplog.text
    # Ties at the tail start leave no tail either.
    assert Threshold().fit(np.r_[np.full(98, 0.5), 1.0, 2.0]).method_ == "percentile"
    # Either kind saves and loads with its method; a file that says pot still needs its tail.
    for name, fitted in (("pot", auto), ("percentile", small)):
        fitted.save(tmp_path / name)
        loaded = Threshold.load(tmp_path / name)
        assert loaded.config.method == "auto" and loaded.method_ == name and loaded.threshold_ == fitted.threshold_
    data = json.loads((tmp_path / "percentile" / "threshold.json").read_text())
    with pytest.raises(ThresholdFileError, match="tail: expected the fitted tail"):
        Threshold.from_dict(resign({**data, "config": {**data["config"], "method": "pot"}}))


def test_a_failed_fit_changes_nothing_and_a_new_fit_forgets_the_old_step_threshold():
    rng = np.random.default_rng(12)
    fitted = Threshold().fit(rng.exponential(size=2000)).fit_steps((4,))
    before = (fitted.threshold_, fitted.method_, fitted.n_samples_, fitted.steps_)
    with pytest.raises(SeqaeError, match="all 50 errors equal 1"):
        fitted.fit(np.ones(50))
    assert (fitted.threshold_, fitted.method_, fitted.n_samples_, fitted.steps_) == before
    fitted.fit(rng.exponential(size=100))
    assert fitted.method_ == "percentile" and fitted.n_samples_ == 100
    assert fitted.steps_ is None and fitted.partial_ is None and fitted.covering_ is None


def test_a_tail_that_puts_the_threshold_at_infinity_is_not_a_threshold(caplog):
    errors = np.r_[np.zeros(190), 10.0 ** np.arange(290, 300)]  # a heavy tail: the fitted quantile overflows
    with pytest.raises(SeqaeError, match=r"generalized Pareto fit on the 10 errors .* a threshold of inf\); use "
                                         r"--method percentile \(or auto\)$"):
        Threshold(ThresholdConfig(method="pot")).fit(errors)
    with caplog.at_level("INFO", logger="seqae.thresholds"):
        fitted = Threshold().fit(errors)
    assert fitted.method_ == "percentile" and np.isfinite(fitted.threshold_)
    assert "the empirical percentile instead of pot" in caplog.text


def test_float16_errors_fit_and_score_without_a_numpy_warning(recwarn):
    errors = np.random.default_rng(7).exponential(size=2000).astype(np.float16)
    for method in ("pot", "percentile"):
        fitted = Threshold(ThresholdConfig(method=method)).fit(errors)
        fitted.score(errors), fitted.predict(errors), fitted.fingerprint()
        assert np.isfinite(fitted.threshold_)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.fixture()
def saved(tmp_path):
    """A fitted pot threshold saved in ``tmp_path``; returns (folder, its threshold.json as a dict)."""
    Threshold(ThresholdConfig(method="pot")).fit(np.random.default_rng(6).exponential(size=200)).save(tmp_path)
    return tmp_path, json.loads((tmp_path / "threshold.json").read_text())


def resign(data):
    """``data`` with its checksum recomputed (where JSON can hold its values): the fields are still checked."""
    try:
        data["sha256"] = canonical_sha256({k: v for k, v in data.items() if k != "sha256"})
    except ValueError:  # NaN or infinity
        pass
    return data


# name -> (edit of the saved dict, the message after "<path>: ")
FILE_CASES = {
    "empty_object": (lambda d: {}, "missing key(s) format, model_id, config, threshold, n_samples, tail, reference, "
                                   "fitted_at, sha256; expected the keys"),
    "a_string": (lambda d: "high", "expected a JSON object written by seqae threshold, found str; re-run seqae "
                                   "threshold"),
    "written_before_checksums": (lambda d: {k: d[k] for k in ("config", "threshold", "n_samples", "tail", "reference",
                                                              "fitted_at")},
                                 "missing key(s) format, model_id, sha256; expected the keys"),
    "unknown_key": (lambda d: {**d, "note": 1}, "unknown key(s) note; expected the keys"),
    "threshold_nan": (lambda d: {**d, "threshold": float("nan")}, "threshold: expected a finite number, found nan; "
                                                                  "re-run seqae threshold"),
    "threshold_text": (lambda d: {**d, "threshold": "high"}, "threshold: expected a finite number, found 'high'"),
    "threshold_infinite": (lambda d: {**d, "threshold": float("inf")}, "threshold: expected a finite number, found inf"),
    "reference_empty": (lambda d: {**d, "reference": []}, "reference: expected a non-empty list of the errors fitted "
                                                          "on, found []"),
    "reference_nan": (lambda d: {**d, "reference": [0.1, float("nan")]}, "reference: expected finite numbers only, "
                                                                         "found nan"),
    "reference_unsorted": (lambda d: {**d, "reference": [2.0, 1.0], "n_samples": 2},
                           "reference: expected the errors in ascending order, found 'a list out of order'"),
    "n_samples": (lambda d: {**d, "n_samples": 5}, "n_samples: expected the length of reference (200), found 5"),
    "tail_missing_scale": (lambda d: {**d, "tail": {"start": 1.0, "shape": 0.1, "share": 0.05}},
                           "tail: expected an object with start, shape, scale and share, found"),
    "tail_scale_zero": (lambda d: {**d, "tail": {**d["tail"], "scale": 0.0}},
                        "tail.scale: expected a positive number, found 0.0"),
    "config_method": (lambda d: {**d, "config": {**d["config"], "method": "iqr"}},
                      "config: method: expected 'auto', 'percentile' or 'pot', got 'iqr'; re-run seqae threshold"),
    "config_not_an_object": (lambda d: {**d, "config": []}, "config: expected a mapping of option names to values, "
                                                            "got list"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
@pytest.mark.parametrize("signed", [False, True], ids=["as-edited", "checksum-recomputed"])
def test_a_hand_edited_threshold_file_is_one_line_naming_the_field(saved, case, signed):
    folder, data = saved
    edited, message = FILE_CASES[case]
    edited = edited(data)
    if signed and isinstance(edited, dict) and "sha256" in edited:
        edited = resign(edited)
    (folder / "threshold.json").write_text(json.dumps(edited))
    with pytest.raises(ThresholdFileError) as caught:
        Threshold.load(folder)
    assert str(caught.value).startswith(f"{folder / 'threshold.json'}: {message}"), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_valid_edit_is_caught_by_the_checksum(saved):
    folder, data = saved
    (folder / "threshold.json").write_text(json.dumps({**data, "threshold": data["threshold"] * 10}))
    with pytest.raises(ThresholdFileError, match=r"threshold\.json: sha256: expected [0-9a-f]{16}\.\.\. \(the checksum "
                                                 r"of the content\), found [0-9a-f]{16}\.\.\.: the file was edited "
                                                 r"after seqae threshold wrote it; re-run seqae threshold$"):
        Threshold.load(folder)


def test_a_threshold_of_another_model_is_refused(saved):
    _, data = saved
    data = resign({**data, "model_id": "abc"})
    assert Threshold.from_dict(data, "t.json", model_id="abc").threshold_ == data["threshold"]
    with pytest.raises(ThresholdFileError, match=r"^t\.json: model_id: expected 'def' \(the model of this directory: "
                                                 r"a threshold fits one model's errors\), found 'abc'"):
        Threshold.from_dict(data, "t.json", model_id="def")


def test_the_checksum_is_of_the_canonical_content_stored_in_the_file(saved):
    folder, data = saved
    assert data["format"] == "seqae.threshold/1" and data["model_id"] is None  # no seqae.json in this folder
    body = {k: v for k, v in data.items() if k != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert data["sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


def long_normal_errors(folder, rng, n_series=6, steps=2000, window=16, stride=2):
    """Normal long series scored as ``embed --step-scores`` scores them, with errors that behave like
    a model's: each step's badness is a smooth log-normal process, each window sees it with its own
    noise (step errors of one step differ from window to window), a window's error is the mean of its
    step errors. Returns the windows' errors in series order and the fold's step rows."""
    from seqae.data import DataConfig, ShardReader, resolve_shards
    from seqae.infer.steps import StepScores

    kernel = np.ones(4) / 2.0
    badness = [np.exp(0.5 * np.convolve(rng.normal(size=steps + 3), kernel, "valid")) for _ in range(n_series)]
    pq.write_table(pa.table({"k": np.repeat(np.arange(n_series), steps), "t": np.tile(np.arange(steps), n_series),
                             "x": np.concatenate(badness).astype(np.float32)}), folder / "s.parquet")
    config = DataConfig(layout="long", key_column="k", time_column="t", feature_columns=("x",), window=window,
                        stride=stride)
    fold, window_errors, rows = StepScores(pa.int64()), [], []
    for batch, _ in ShardReader(resolve_shards(str(folder / "s.parquet"))[0], config):
        step_error = batch.values[..., 0] * rng.lognormal(0.0, 0.6, batch.values.shape[:2])
        valid = np.arange(step_error.shape[1])[None, :] < batch.lengths[:, None]
        window_errors.append((step_error * valid).sum(axis=1) / batch.lengths)
        rows.append(fold.add(batch, step_error, window_errors[-1]))
    rows.append(fold.finish())
    return np.concatenate(window_errors), {f: np.concatenate([getattr(r, f) for r in rows])
                                           for f in ("window_min", "window_mean", "mean", "windows")}


@pytest.mark.parametrize("method", ["percentile", "pot"])
def test_the_step_threshold_keeps_its_false_alarm_rate_per_step_on_other_normal_data(tmp_path, method):
    """Fitted on held-out normal windows (their errors in series order, as the reference holds them),
    the step threshold flags about the asked share of another normal data set's steps; the window
    threshold does not, on either step statistic (the flag before step thresholds: 7x the rate)."""
    from seqae.thresholds import covering_runs

    rng = np.random.default_rng(0)
    (tmp_path / "held_out").mkdir()
    (tmp_path / "other").mkdir()
    held_out_errors, _ = long_normal_errors(tmp_path / "held_out", rng)
    _, other = long_normal_errors(tmp_path / "other", rng)
    rate = 0.01
    fitted = Threshold(ThresholdConfig(method=method, false_alarm_rate=rate)).fit(held_out_errors)
    fitted.fit_steps(covering_runs(16, 2))
    assert fitted.covering_ == (8,) and fitted.steps_.n_samples_ == len(held_out_errors) - 7
    full = other["windows"] == 8  # the series' first and last steps are covered by fewer windows
    for steps in (full, slice(None)):
        assert rate / 2 <= fitted.steps_.predict(other["window_min"][steps]).mean() <= rate * 2
    assert fitted.predict(other["mean"]).mean() > rate * 3  # window threshold on single-step errors
    assert fitted.predict(other["window_min"]).mean() < rate / 3  # window threshold on the step score
    assert fitted.predict(other["window_mean"]).mean() < rate / 3  # and on the step score before it


def test_step_scores_of_held_out_windows_are_the_least_of_covering_runs(caplog):
    from seqae.thresholds import run_scores

    errors = np.array([1.0, 3.0, 2.0, 4.0, np.nan, 6.0, 7.0])
    assert run_scores(errors, (2,)).tolist() == [1.0, 2.0, 2.0, 6.0]  # runs holding the NaN are left out
    assert sorted(run_scores(errors, (1, 2))) == sorted([1, 3, 2, 4, 6, 7, 1, 2, 2, 6])
    assert run_scores(errors, (2,), "window_error_mean").tolist() == [2.0, 2.5, 3.0, 6.5]  # the statistic before
    assert run_scores(errors[:2], (3,)).size == 0
    with caplog.at_level(logging.WARNING, logger="seqae.thresholds"):
        Threshold(ThresholdConfig(method="percentile")).fit(np.arange(113.0)).fit_steps((64,))
    assert ("the 113 held-out windows hold 1 runs of 64 windows that share none (independent step scores); a "
            "false-alarm rate of 0.01 needs at least 500 of them") in caplog.text  # make demo-long's case
    few = Threshold(ThresholdConfig(method="percentile")).fit(np.arange(30.0))
    with pytest.raises(SeqaeError, match=r"^step threshold: 30 held-out windows give 15 held-out step scores \(a step "
                                         r"away from a series' ends is covered by 16 windows\); expected at least 20 "
                                         r"finite errors to fit on, got 15$"):
        few.fit_steps((16,))


@pytest.mark.parametrize("method", ["percentile", "pot"])
def test_steps_covered_by_fewer_windows_keep_the_rate_against_their_own_run(method):
    """The least of fewer windows runs higher: against the full run's threshold a step covered by one
    window is flagged half the time. Scaled to its own run's threshold (``adjust_steps``), each
    coverage is flagged at about the asked rate."""
    rng = np.random.default_rng(3)
    rate, full = 0.01, 8
    fitted = Threshold(ThresholdConfig(method=method, false_alarm_rate=rate)).fit(rng.lognormal(0, 0.5, 20000))
    fitted.fit_steps((full,))
    assert len(fitted.partial_) == full - 1
    assert list(fitted.partial_) == sorted(fitted.partial_, reverse=True)  # fewer windows: a higher threshold
    assert fitted.partial_[-1] >= fitted.steps_.threshold_
    other = rng.lognormal(0, 0.5, 200_000)  # windows of other normal data, independent here
    for covered in (1, 3, 7, 8):
        scores = np.lib.stride_tricks.sliding_window_view(other, covered).min(axis=1)
        windows = np.full(len(scores), covered)
        assert rate / 2 <= fitted.steps_.predict(fitted.adjust_steps(scores, windows)).mean() <= rate * 2, covered
    one = other[:1000]
    assert fitted.steps_.predict(one).mean() > 0.3  # unadjusted, one window against the full run's threshold
    assert (fitted.adjust_steps(one, np.full(1000, full)) == one).all()  # a full run is left as it is


def test_a_step_threshold_round_trips_and_its_fields_are_checked(tmp_path, caplog):
    fitted = Threshold(ThresholdConfig(method="pot")).fit(np.random.default_rng(7).exponential(size=400))
    fitted.fit_steps((4, 5))
    fitted.save(tmp_path)  # no seqae.json here: bound to no model, the step part as fitted
    data = json.loads((tmp_path / "threshold.json").read_text())
    assert data["steps"]["statistic"] == "window_error_min" and data["steps"]["covering_windows"] == [4, 5]
    back = Threshold.load(tmp_path)
    assert back.steps_.threshold_ == fitted.steps_.threshold_ and back.covering_ == (4, 5)
    assert back.statistic_ == fitted.statistic_ == "window_error_min"
    assert back.partial_ == fitted.partial_ and len(back.partial_) == 3  # runs of 1, 2 and 3 windows
    # A file fitted before 2026-12-04 names the mean of the covering windows: it loads, and says so.
    steps_then = {k: v for k, v in data["steps"].items() if k != "partial_thresholds"}
    with caplog.at_level(logging.WARNING, logger="seqae.thresholds"):
        older = Threshold.from_dict(resign({**data, "steps": {**steps_then, "statistic": "window_error_mean"}}))
    assert older.statistic_ == "window_error_mean" and older.steps_.threshold_ == fitted.steps_.threshold_
    assert older.partial_ is None and (older.adjust_steps(np.ones(3), np.array([1, 2, 9])) == 1).all()
    assert "steps near a series' ends" not in caplog.text  # the mean's level does not depend on the windows
    with caplog.at_level(logging.WARNING, logger="seqae.thresholds"):  # the least, fitted before the ends had theirs
        Threshold.from_dict(resign({**data, "steps": steps_then}))
    assert "no thresholds for the steps near a series' ends" in caplog.text
    assert back.steps_.tail_ == fitted.steps_.tail_ and back.fingerprint() == fitted.fingerprint()
    assert Threshold(ThresholdConfig(method="pot")).fit(np.random.default_rng(7).exponential(size=400)).fingerprint() \
        != fitted.fingerprint()  # the step part is part of what outputs depend on
    for edit, message in (
            (lambda s: {**s, "threshold": float("nan")}, "steps.threshold: expected a finite number, found nan"),
            (lambda s: {**s, "statistic": "step_error_mean"},
             "steps.statistic: expected 'window_error_min' or 'window_error_mean' or 'window_distance_min', found "
                 "'step_error_mean'"),
            (lambda s: {**s, "covering_windows": [0]}, "steps.covering_windows: expected a list of window counts >= 1"),
            (lambda s: {**s, "partial_thresholds": [1.0]},
             "steps.partial_thresholds: expected a list of 3 finite thresholds >= 0 (runs of 1 to 3 windows)"),
            (lambda s: {k: v for k, v in s.items() if k != "tail"}, "steps: expected an object with statistic, ")):
        edited = resign({**data, "steps": edit(data["steps"])})
        with pytest.raises(ThresholdFileError, match=re.escape(message)):
            Threshold.from_dict(edited, "threshold.json")
