"""Thresholds on synthetic errors with known tails: the false-alarm rate lands where asked."""

import numpy as np
import pytest
from scipy import stats

from seqae.errors import ConfigError, SeqaeError
from seqae.thresholds import Threshold, ThresholdConfig

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
    with pytest.raises(ConfigError, match=r"^method: expected 'percentile' or 'pot', got 'iqr'$"):
        ThresholdConfig(method="iqr")
    with pytest.raises(ConfigError, match=r"^false_alarm_rate: expected a value in \(0, 0.5\), got 0$"):
        ThresholdConfig(false_alarm_rate=0)
