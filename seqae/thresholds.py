"""Thresholds on the anomaly score (reconstruction error), fitted on data the user says is normal.

In the style of scikit-learn / alibi-detect: ``fit(errors)`` learns state with a trailing underscore,
``score(errors)`` gives a calibrated score in [0, 1] (the probability that a normal sequence has an
error at least this large: 1 - the tail probability), ``predict(errors)`` flags anomalies. No TensorFlow.

- ``percentile``: the threshold is the ``1 - false_alarm_rate`` quantile of the normal errors; the
  score is the empirical CDF.
- ``pot`` (peaks over threshold, extreme value theory): a generalized Pareto distribution
  (``scipy.stats.genpareto``) is fitted to the excesses over a high initial quantile ``tail_start``;
  the threshold is where its tail probability equals ``false_alarm_rate``, so rates far below
  1 / n_samples are still meaningful. The score uses the empirical CDF below the tail start and the
  fitted tail above it.

``contamination``: fitting on all data with an expected share of anomalies; the largest
``contamination`` share of the errors is left out before fitting (either method).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqae import names
from seqae.configbase import Config, check_choice, check_range
from seqae.errors import ConfigError, SeqaeError
from seqae.storage import Location, read_json, sha256_text, utc_now, write_json

THRESHOLD_FILE = names.THRESHOLD_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThresholdConfig(Config):
    """How to fit.

    Args:
        method: ``percentile`` or ``pot``.
        false_alarm_rate: the share of normal sequences that may be flagged (0 < rate < 1).
        contamination: expected share of anomalies in the fitting data (0: the data is normal).
        tail_start: pot only: the quantile above which the tail is modelled (typically 0.9 to 0.98).
    """

    method: str = "pot"
    false_alarm_rate: float = 0.01
    contamination: float = 0.0
    tail_start: float = 0.95

    def __post_init__(self) -> None:
        check_choice("method", self.method, ("percentile", "pot"))
        check_range("false_alarm_rate", self.false_alarm_rate, 0.0, 0.5)
        if self.false_alarm_rate <= 0:
            raise ConfigError(f"false_alarm_rate: expected a value in (0, 0.5), got {self.false_alarm_rate!r}")
        check_range("contamination", self.contamination, 0.0, 0.5)
        check_range("tail_start", self.tail_start, 0.5, 1.0)


class Threshold:
    """A fitted threshold on reconstruction errors.

    Attributes (after ``fit``):
        threshold_: errors above it are anomalies.
        n_samples_: errors fitted on.
        reference_: the sorted fitting errors (kept for the empirical part of ``score``).
        tail_: pot only: ``{"start", "shape", "scale", "share"}`` of the fitted generalized Pareto tail.
    """

    def __init__(self, config: ThresholdConfig = ThresholdConfig()):
        self.config = config
        self.threshold_: float | None = None
        self.n_samples_ = 0
        self.reference_: np.ndarray | None = None
        self.tail_: dict[str, float] | None = None

    def fit(self, errors: np.ndarray) -> Threshold:
        errors = np.sort(np.asarray(errors, dtype=np.float64))
        errors = errors[np.isfinite(errors)]
        cfg = self.config
        if len(errors) < 20:
            raise SeqaeError(f"threshold: expected at least 20 finite errors to fit on, got {len(errors)}")
        if cfg.contamination:
            errors = errors[: max(int(round(len(errors) * (1 - cfg.contamination))), 20)]
        self.reference_, self.n_samples_ = errors, len(errors)
        if cfg.method == "percentile":
            self.threshold_ = float(np.quantile(errors, 1 - cfg.false_alarm_rate))
            if len(errors) * cfg.false_alarm_rate < 5:
                log.warning("threshold: %d rows hold fewer than 5 errors above the %g quantile: the threshold "
                            "(%.4g) is close to their maximum and the false-alarm rate is not measured",
                            len(errors), 1 - cfg.false_alarm_rate, self.threshold_)
            return self
        from scipy.stats import genpareto

        start = float(np.quantile(errors, cfg.tail_start))
        excess = errors[errors > start] - start
        if len(excess) < 10:
            raise SeqaeError(f"threshold: pot needs at least 10 errors above the tail start (quantile "
                             f"{cfg.tail_start}) of {len(errors)}, got {len(excess)}; fit on more rows, or use the "
                             f"empirical percentile (--method percentile) on so few")
        shape, _, scale = genpareto.fit(excess, floc=0.0)
        share = len(excess) / len(errors)  # P(error > start)
        self.tail_ = {"start": start, "shape": float(shape), "scale": float(scale), "share": share}
        if cfg.false_alarm_rate >= share:  # the threshold lies below the modelled tail: empirical
            self.threshold_ = float(np.quantile(errors, 1 - cfg.false_alarm_rate))
        else:
            self.threshold_ = start + float(genpareto.isf(cfg.false_alarm_rate / share, shape, 0.0, scale))
        return self

    def _check_fitted(self) -> None:
        if self.threshold_ is None:
            raise SeqaeError("threshold: not fitted; call fit() or load one with Threshold.load()")

    def tail_probability(self, errors: np.ndarray) -> np.ndarray:
        """P(a normal error >= e) for each error: empirical, and the fitted tail above its start."""
        self._check_fitted()
        errors = np.asarray(errors, dtype=np.float64)
        ref = self.reference_
        above = len(ref) - np.searchsorted(ref, errors, side="left")
        p = (above + 1) / (len(ref) + 1)  # never exactly 0: a new extreme gets 1 / (n + 1)
        if self.tail_ is not None:
            from scipy.stats import genpareto

            t = self.tail_
            in_tail = errors > t["start"]
            p = np.where(in_tail, t["share"] * genpareto.sf(errors - t["start"], t["shape"], 0.0, t["scale"]), p)
        return np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0)

    def score(self, errors: np.ndarray) -> np.ndarray:
        """A calibrated anomaly score in [0, 1]: 1 - the tail probability."""
        return 1.0 - self.tail_probability(errors)

    def predict(self, errors: np.ndarray) -> np.ndarray:
        """``(n,)`` bool: True for anomalies (error above ``threshold_``)."""
        self._check_fitted()
        return np.asarray(errors, dtype=np.float64) > self.threshold_

    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"config": self.config.to_dict(), "threshold": self.threshold_, "n_samples": self.n_samples_,
                "tail": self.tail_, "reference": self.reference_.tolist(), "fitted_at": utc_now()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Threshold:
        unknown = set(data) - {"config", "threshold", "n_samples", "tail", "reference", "fitted_at"}
        if unknown:
            raise ConfigError(f"threshold: unknown key(s) {', '.join(sorted(unknown))}")
        threshold = cls(ThresholdConfig.from_dict(data["config"], "threshold config"))
        threshold.threshold_ = float(data["threshold"])
        threshold.n_samples_ = int(data["n_samples"])
        threshold.tail_ = data.get("tail")
        threshold.reference_ = np.asarray(data["reference"], dtype=np.float64)
        return threshold

    def save(self, model_dir: str | os.PathLike) -> Path:
        path = Path(model_dir) / THRESHOLD_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, model_dir: str | os.PathLike | Location) -> Threshold | None:
        """The threshold stored in a model directory (local or on an object store), or None."""
        file = Location.of(model_dir).join(THRESHOLD_FILE)
        return cls.from_dict(read_json(file, "threshold file")) if file.is_file() else None

    def fingerprint(self) -> str:
        return sha256_text(json.dumps({k: v for k, v in self.to_dict().items() if k != "fitted_at"},
                                      sort_keys=True))[:16]
