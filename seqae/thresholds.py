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
- ``auto`` (the default): ``pot`` where the errors hold a tail to fit (at least 10 above the tail
  start, so about 200 errors at 0.95, and a generalized Pareto fit that gives a finite threshold),
  else ``percentile``. A
  short series or a small data set holds out too few rows for a tail fit, and the default must still
  fit a threshold there; ``method_`` says which was used, and the file records it by its ``tail``
  (present for ``pot``, null for ``percentile``).

``contamination``: fitting on all data with an expected share of anomalies; the largest
``contamination`` share of the errors is left out before fitting (either method).

**Long layout: a second threshold for the steps.** ``embed --step-scores`` scores each time step by
``window_error_min``, the least error of the windows that cover it (``seqae.infer.steps``). That is
another statistic than a window's error: taken over a dozen overlapping windows it is lower and
varies less, and a threshold fitted on window errors flags far fewer steps than it promises (or,
applied to single-step errors as before, far more). So a long-layout model's threshold also holds
``steps_``, fitted the same way (same method and rate) on held-out *step* scores: ``fit_steps`` takes
the fitting windows' errors in their series' order (the held-out reference is: one series after
another, each in time order), and each run of consecutive windows that covers one step away from a
series' ends (``covering_runs``) gives one held-out step score, the least of the run's errors.
``steps.statistic`` in ``threshold.json`` names it; a file written before 2026-12-04 says
``window_error_mean`` (the mean of the run), and its step threshold still applies to that column.

Steps near a series' ends are covered by fewer windows, and the least of fewer errors runs higher: a
threshold fitted on full runs would flag them far more often than asked. So ``fit_steps`` also fits,
the same way, one threshold per shorter run (``partial_``: runs of 1, 2, ... windows, made
non-increasing, as the true quantiles are), and ``adjust_steps`` scales a partly covered step's score
by the ratio of the full run's threshold to its own run's: it is flagged exactly when it is above its
own run's threshold; its calibrated ``score`` is exact at the threshold only (the least of fewer
windows is not a rescaled copy of the full run's). ``save`` does this
for a model of the long layout, so ``seqae threshold`` fits both. Runs that straddle two held-out
series (at most ``covering - 1`` per series boundary; the reference does not record where series
change) mix two series' normal windows: a small share where series are long.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from seqae import names
from seqae.config import ThresholdConfig  # defined with the other configs; imported from here too
from seqae.errors import ConfigError, ModelDirError, SeqaeError
from seqae.storage import Location, read_json, sha256_text, utc_now, write_json

THRESHOLD_FILE = names.THRESHOLD_FILE
FORMAT = "seqae.threshold/1"
#: The keys of threshold.json; ``sha256`` is that of the canonical JSON of all the others.
KEYS = ("format", "model_id", "config", "threshold", "n_samples", "tail", "reference", "fitted_at", "sha256")
#: Written for a long-layout model only (and absent from files written before step thresholds).
OPTIONAL_KEYS = ("steps",)
STEPS_KEYS = ("statistic", "covering_windows", "threshold", "n_samples", "tail", "reference")
#: Written by fits since partly covered steps got their own thresholds (absent before: no adjustment).
STEPS_OPTIONAL_KEYS = ("partial_thresholds",)
#: What a step threshold is fitted on and applied to (``seqae.infer.steps``), and how a run of covering
#: windows' errors makes it; new fits use ``STEP_STATISTIC``, files name theirs.
STEP_STATISTICS: dict[str, Callable[..., np.ndarray]] = {names.WINDOW_ERROR_MIN: np.min,
                                                          names.WINDOW_ERROR_MEAN: np.mean,
                                                          names.WINDOW_DISTANCE_MIN: np.min}
#: The step statistic of a model without a bank of training windows, and of one with (``neighbours.onnx``).
STEP_STATISTIC = names.WINDOW_ERROR_MIN
NEIGHBOURS_STEP_STATISTIC = names.WINDOW_DISTANCE_MIN
TAIL_KEYS = ("start", "shape", "scale", "share")

log = logging.getLogger(__name__)


class ThresholdFileError(ModelDirError):
    """``threshold.json`` is not what ``seqae threshold`` wrote (edited, truncated, or another model's)."""


def canonical_sha256(body: dict[str, Any]) -> str:
    """sha256 of ``body`` as canonical JSON (sorted keys, no spaces, no NaN): what threshold.json records."""
    return sha256_text(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False))


def covering_runs(window: int, stride: int) -> tuple[int, ...]:
    """How many consecutive windows cover a step away from a series' ends: ``window // stride``, and
    one more for the ``window % stride`` steps of each stride that one more window reaches.

    >>> covering_runs(140, 10), covering_runs(64, 1), covering_runs(10, 4), covering_runs(8, 16)
    ((14,), (64,), (2, 3), (1,))
    """
    if window < 1 or stride < 1:
        raise ValueError(f"covering_runs: expected a window and a stride >= 1, got {window} and {stride}")
    runs = max(window // stride, 1)
    return (runs,) if window % stride == 0 or stride > window else (runs, runs + 1)


def run_scores(window_errors: np.ndarray, covering: tuple[int, ...], statistic: str = STEP_STATISTIC) -> np.ndarray:
    """The step scores that windows with these errors give, in their series' order: ``statistic``
    (``STEP_STATISTICS``: the least or the mean) of every run of ``k`` consecutive errors for each
    ``k`` in ``covering`` (runs holding a NaN are left out).

    Returns:
        ``(sum of (n - k + 1),)`` float64, unsorted.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    errors = np.asarray(window_errors, dtype=np.float64)
    reduce = STEP_STATISTICS[statistic]
    out = [reduce(sliding_window_view(errors, k), axis=1) for k in covering if len(errors) >= k]
    scores = np.concatenate(out) if out else np.zeros(0)  # NaN spreads over the runs that hold it
    return scores[np.isfinite(scores)]


def step_statistic(threshold: Threshold | None, neighbours: bool = False) -> str:
    """The step statistic a model's threshold reads: the one its step threshold was fitted on;
    ``STEP_STATISTIC`` for a threshold without a step threshold (its window threshold is on errors);
    without a threshold, ``NEIGHBOURS_STEP_STATISTIC`` for a model with a bank of training windows
    (``neighbours``), else ``STEP_STATISTIC``."""
    if threshold is not None:  # a threshold without a step threshold (written before them): the error's
        return threshold.statistic_ or STEP_STATISTIC  # statistic, in the window threshold's units
    return NEIGHBOURS_STEP_STATISTIC if neighbours else STEP_STATISTIC


def step_score(threshold: Threshold | None, columns: Mapping[str, np.ndarray],
               windows: np.ndarray) -> tuple[str, np.ndarray]:
    """The step score a model's threshold reads, with its statistic's name: the column the step
    threshold was fitted on (``step_statistic``: without any threshold, ``window_distance_min`` where
    ``columns`` hold it), partly covered steps scaled to their own run's threshold
    (``Threshold.adjust_steps``). What ``seqae embed`` flags and ``seqae evaluate`` ranks.

    Args:
        columns: ``(steps,)`` arrays by statistic name (``window_error_min``, ``window_error_mean``,
            and ``window_distance_min`` for a model with a bank of training windows).
        windows: ``(steps,)`` how many windows covered each step.

    Raises:
        SeqaeError: the step threshold names a statistic ``columns`` lack (fitted on the distances of
            a bank the model no longer has).
    """
    name = step_statistic(threshold, NEIGHBOURS_STEP_STATISTIC in columns)
    if name not in columns:
        raise SeqaeError(f"{THRESHOLD_FILE}: the step threshold was fitted on {name}, which this model does not compute (no "
                         f"{names.NEIGHBOURS_ONNX}: exported without its bank of training windows?); re-run "
                         "seqae threshold")
    values = np.asarray(columns[name], dtype=np.float64)
    return name, values if threshold is None else threshold.adjust_steps(values, windows)


@contextlib.contextmanager
def _quiet():
    """This module's warnings off (fits whose few scores it would warn about once each, in a loop)."""
    was, log.disabled = log.disabled, True
    try:
        yield
    finally:
        log.disabled = was


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


class Threshold:
    """A fitted threshold on reconstruction errors.

    Attributes (after ``fit``):
        threshold_: errors above it are anomalies.
        n_samples_: errors fitted on.
        reference_: the sorted fitting errors (kept for the empirical part of ``score``).
        tail_: pot only: ``{"start", "shape", "scale", "share"}`` of the fitted generalized Pareto tail.
        steps_: long layout: the threshold on step scores, fitted by ``fit_steps`` on held-out step
            scores with the same config; None otherwise.
        statistic_: with ``steps_``: the step statistic it applies to (``STEP_STATISTIC`` when fitted
            here; a file written before it says ``window_error_mean``).
        partial_: with ``steps_``: the thresholds of steps covered by 1, 2, ... ``min(covering_) - 1``
            windows (``adjust_steps``); None in files written before them.
        covering_: with ``steps_``: the runs of covering windows the held-out step scores were made of.
    """

    def __init__(self, config: ThresholdConfig = ThresholdConfig()):
        self.config = config
        self.threshold_: float | None = None
        self.n_samples_ = 0
        self.reference_: np.ndarray | None = None
        self.tail_: dict[str, float] | None = None
        self.steps_: Threshold | None = None
        self.covering_: tuple[int, ...] | None = None
        self.statistic_: str | None = None
        self.partial_: tuple[float, ...] | None = None
        self._errors_in_order: np.ndarray | None = None  # what fit was given, for fit_steps at save

    def fit(self, errors: np.ndarray) -> Threshold:
        """Fit on normal errors ``(n,)``; their order is kept for ``fit_steps`` (windows in series order).
        A fit replaces everything an earlier one learned (a step threshold included: ``save`` fits it
        anew); one that fails leaves the object as it was."""
        in_order = np.asarray(errors, dtype=np.float64).copy()
        errors = np.sort(in_order)
        errors = errors[np.isfinite(errors)]
        cfg = self.config
        if len(errors) < 20:
            raise SeqaeError(f"threshold: expected at least 20 finite errors to fit on, got {len(errors)}")
        if cfg.contamination:
            errors = errors[: max(int(round(len(errors) * (1 - cfg.contamination))), 20)]
        if errors[0] == errors[-1]:
            raise SeqaeError(f"threshold: all {len(errors)} errors equal {errors[0]:.6g}; expected errors that vary "
                             "(a threshold separates the larger ones): check that the rows differ (constant or "
                             "all-padding rows?) and that the model is the one trained on them")
        threshold, tail = self._fit_tail(errors) if cfg.method != "percentile" else (None, None)
        if threshold is None:
            threshold = float(np.quantile(errors, 1 - cfg.false_alarm_rate))
            if len(errors) * cfg.false_alarm_rate < 5:
                log.warning("threshold: %d rows hold fewer than 5 errors above the %g quantile: the threshold "
                            "(%.4g) is close to their maximum and the false-alarm rate is not measured",
                            len(errors), 1 - cfg.false_alarm_rate, threshold)
        self.threshold_, self.tail_, self.reference_, self.n_samples_ = threshold, tail, errors, len(errors)
        self._errors_in_order = in_order
        self.steps_ = self.covering_ = self.statistic_ = self.partial_ = None
        return self

    def _fit_tail(self, errors: np.ndarray) -> tuple[float | None, dict[str, float] | None]:
        """pot on the sorted ``errors``: the threshold and the fitted tail; ``(None, None)`` where
        ``auto`` takes the percentile instead (too few errors above the tail start, or a fit that fails
        or puts the threshold at infinity), said in the log. ``pot`` raises there."""
        from scipy.stats import genpareto

        cfg = self.config
        start = float(np.quantile(errors, cfg.tail_start))
        excess = errors[errors > start] - start
        if len(excess) < 10:
            ties = int(np.count_nonzero(errors == start))
            found = (f"{len(excess)} of {len(errors)} errors are above it ({start:.6g}; {ties} errors equal it)"
                     if ties > 1 else f"{len(excess)} of {len(errors)} errors are above it ({start:.6g})")
            if cfg.method == "auto":
                log.info("threshold: %s, fewer than the 10 a tail fit needs: the empirical percentile instead of pot",
                         found)
                return None, None
            raise SeqaeError(f"threshold: pot needs at least 10 errors above the tail start (quantile "
                             f"{cfg.tail_start}); {found}. Fit on more rows, lower --tail-start, or use the "
                             "empirical percentile (--method percentile, or auto)")
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # judged below: a fit that overflows is refused
                shape, _, scale = genpareto.fit(excess, floc=0.0)
        except (ValueError, RuntimeError) as exc:  # scipy's FitError is a RuntimeError
            shape, scale, why = np.nan, np.nan, f"{type(exc).__name__}: {exc}"
        else:
            why = f"shape {shape}, scale {scale}"
        share = len(excess) / len(errors)  # P(error > start)
        threshold = None
        if np.isfinite(shape) and np.isfinite(scale) and scale > 0:
            if cfg.false_alarm_rate >= share:  # the threshold lies below the modelled tail: empirical
                threshold = float(np.quantile(errors, 1 - cfg.false_alarm_rate))
            else:
                threshold = start + float(genpareto.isf(cfg.false_alarm_rate / share, shape, 0.0, scale))
            why = f"{why}: a threshold of {threshold}"
        if threshold is None or not np.isfinite(threshold):
            if cfg.method == "auto":
                log.info("threshold: the generalized Pareto fit on the %d errors above the tail start failed (%s): the "
                         "empirical percentile instead of pot", len(excess), why)
                return None, None
            raise SeqaeError(f"threshold: the generalized Pareto fit on the {len(excess)} errors above the tail start "
                             f"failed ({why}); use --method percentile (or auto)")
        return threshold, {"start": start, "shape": float(shape), "scale": float(scale), "share": share}

    @property
    def method_(self) -> str:
        """The method the fit used: ``pot`` (a fitted tail) or ``percentile`` (what ``auto`` resolved to)."""
        self._fitted()
        return "pot" if self.tail_ is not None else "percentile"

    def fit_steps(self, covering: tuple[int, ...], window_errors: np.ndarray | None = None,
                  statistic: str = STEP_STATISTIC) -> Threshold:
        """Fit ``steps_``, the threshold on step scores, on held-out step scores made of window errors.

        Args:
            covering: ``covering_runs(window, stride)`` of the model.
            window_errors: ``(windows,)`` held-out normal windows' errors, one series after another,
                each in time order; None: those ``fit`` was given. For ``window_distance_min``: the
                windows' ``nearest_distance``.
            statistic: the step statistic (``STEP_STATISTICS``) the held-out scores are made of and
                the threshold applies to: the least over each run (``window_error_min``,
                ``window_distance_min``).

        Raises:
            SeqaeError: too few held-out windows to make the step scores a threshold needs.
        """
        errors = self._errors_in_order if window_errors is None else np.asarray(window_errors, dtype=np.float64)
        if errors is None:
            raise SeqaeError("threshold: fit_steps needs the held-out windows' errors in their series' order; "
                             "call fit() first or pass them")
        if STEP_STATISTICS.get(statistic) is not np.min:
            raise ValueError(f"fit_steps: statistic {statistic!r}: expected one of the least over the covering "
                             f"windows ({', '.join(k for k, v in STEP_STATISTICS.items() if v is np.min)})")
        scores = run_scores(errors, covering, statistic)
        steps = Threshold(self.config)
        try:
            steps.fit(scores)
        except SeqaeError as exc:
            raise SeqaeError(f"step threshold: {len(errors)} held-out windows give {len(scores)} held-out step scores "
                             f"(a step away from a series' ends is covered by {' or '.join(map(str, covering))} "
                             f"windows); {str(exc).removeprefix('threshold: ')}") from exc
        steps._errors_in_order = None
        self.steps_, self.covering_, self.statistic_ = steps, tuple(int(k) for k in covering), statistic
        self.partial_ = self._partial_thresholds(errors, min(covering), steps._fitted()[0])
        # Overlapping runs share windows: only runs that share none are independent scores.
        independent = len(errors) // max(covering)
        if independent * self.config.false_alarm_rate < 5:
            log.warning("step threshold: the %d held-out windows hold %d runs of %d windows that share none (independent "
                        "step scores); a false-alarm rate of %g needs at least %d of them, so the threshold (%.4g) "
                        "rests on a few scores and its rate per step is not measured: hold out more windows (a larger "
                        "validation_fraction, longer or more series) or fit on more normal data (--data)",
                        len(errors), independent, max(covering), self.config.false_alarm_rate,
                        int(np.ceil(5 / self.config.false_alarm_rate)), steps.threshold_)
        return self

    def _partial_thresholds(self, errors: np.ndarray, full: int, threshold: float) -> tuple[float, ...]:
        """The thresholds of runs of 1 .. ``full - 1`` windows, fitted as ``steps_`` was (the empirical
        percentile where the method cannot fit), made non-increasing towards the full run's."""
        fitted = []
        least = np.asarray(errors, dtype=np.float64)  # the least of each run of k windows, k = 1, 2, ...
        for k in range(1, full):
            if k > 1:
                least = np.minimum(least[:-1], errors[k - 1:])  # NaN spreads over the runs that hold it
            scores = least[np.isfinite(least)]
            value = threshold
            for method in dict.fromkeys((self.config.method, "percentile")):
                try:
                    with _quiet():
                        value = Threshold(dataclasses.replace(self.config, method=method)).fit(scores)._fitted()[0]
                    break
                except SeqaeError:
                    continue
            fitted.append(value)
        # The least of fewer windows is never lower: the quantiles fall as the run grows.
        return tuple(float(v) for v in np.maximum.accumulate(np.r_[threshold, fitted[::-1]])[1:][::-1])

    def adjust_steps(self, scores: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """Step scores as the step threshold reads them: a step covered by fewer windows than a full
        run, scaled by the full run's threshold over its own run's (unchanged without ``partial_``).

        Args:
            scores: ``(steps,)`` the step statistic (``statistic_``'s column).
            windows: ``(steps,)`` how many windows covered each step.
        """
        scores = np.asarray(scores, dtype=np.float64)
        if not self.partial_ or self.steps_ is None or self.steps_.threshold_ is None:
            return scores
        partial = np.asarray(self.partial_, dtype=np.float64)
        windows = np.asarray(windows)
        short = (windows >= 1) & (windows <= len(partial))
        own = partial[np.clip(windows, 1, len(partial)) - 1]
        scale = np.where(short & (own > 0), self.steps_.threshold_ / np.where(own > 0, own, 1.0), 1.0)
        return scores * scale

    def _check_fitted(self) -> None:
        self._fitted()

    def _fitted(self) -> tuple[float, np.ndarray]:
        """``threshold_`` and ``reference_``, or the error that says it is not fitted."""
        if self.threshold_ is None or self.reference_ is None:
            raise SeqaeError("threshold: not fitted; call fit() or load one with Threshold.load()")
        return self.threshold_, self.reference_

    def tail_probability(self, errors: np.ndarray) -> np.ndarray:
        """P(a normal error >= e) for each error: empirical, and the fitted tail above its start."""
        _, ref = self._fitted()
        errors = np.asarray(errors, dtype=np.float64)
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
        threshold, _ = self._fitted()
        return np.asarray(errors, dtype=np.float64) > threshold

    def _body(self, model_id: str | None = None) -> dict[str, Any]:
        threshold, reference = self._fitted()
        body = {"format": FORMAT, "model_id": model_id, "config": self.config.to_dict(), "threshold": threshold,
                "n_samples": self.n_samples_, "tail": self.tail_, "reference": reference.tolist(),
                "fitted_at": utc_now()}
        if self.steps_ is not None:
            steps_threshold, steps_reference = self.steps_._fitted()
            body["steps"] = {"statistic": self.statistic_, "covering_windows": list(self.covering_ or ()),
                             "threshold": steps_threshold, "n_samples": self.steps_.n_samples_,
                             "tail": self.steps_.tail_, "reference": steps_reference.tolist()}
            if self.partial_ is not None:
                body["steps"]["partial_thresholds"] = list(self.partial_)
        return body

    def to_dict(self, model_id: str | None = None) -> dict[str, Any]:
        """What ``threshold.json`` holds, ``sha256`` (of the canonical JSON of the rest) included."""
        body = self._body(model_id)
        return {**body, "sha256": canonical_sha256(body)}

    @classmethod
    def from_dict(cls, data: Any, source: str = THRESHOLD_FILE, model_id: str | None = None) -> Threshold:
        """Rebuild from ``to_dict()`` output, checking every field and the checksum.

        Args:
            source: how messages name the file.
            model_id: the model the threshold must belong to (None: not checked).

        Raises:
            ThresholdFileError: one line naming the file, the field, what was expected and what was found.
        """

        def bad(field_name: str, expected: str, found: Any) -> ThresholdFileError:
            shown = repr(found)
            return ThresholdFileError(f"{source}: {field_name}: expected {expected}, found "
                                      f"{shown if len(shown) <= 60 else shown[:57] + '...'}; re-run seqae threshold")

        if not isinstance(data, dict):
            raise ThresholdFileError(f"{source}: expected a JSON object written by seqae threshold, found "
                                     f"{type(data).__name__}; re-run seqae threshold")
        unknown, missing = sorted(set(data) - set(KEYS) - set(OPTIONAL_KEYS)), [k for k in KEYS if k not in data]
        if unknown or missing:
            what = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing key(s) {', '.join(missing)}"
            raise ThresholdFileError(f"{source}: {what}; expected the keys {', '.join(KEYS)}, and steps for a long-layout "
                                     "model (as seqae threshold writes them); re-run seqae threshold")
        if data["format"] != FORMAT:
            raise bad("format", repr(FORMAT), data["format"])
        body = {k: v for k, v in data.items() if k != "sha256"}
        try:
            actual = canonical_sha256(body)
        except ValueError:  # NaN or infinity: named below
            actual = None
        threshold = cls._checked_fields(data, source, bad)
        if "steps" in data:
            threshold.steps_, threshold.covering_, threshold.partial_ = cls._checked_steps(data, source, bad)
            threshold.statistic_ = data["steps"]["statistic"]
            if (threshold.statistic_ == names.WINDOW_ERROR_MIN and threshold.partial_ is None
                    and min(threshold.covering_) > 1):
                log.warning("%s: the step threshold has no thresholds for the steps near a series' ends (fitted "
                            "before seqae fitted those), so they are flagged far more often than asked; refit it "
                            "(seqae threshold)", source)
        if data["sha256"] != actual:
            raise ThresholdFileError(f"{source}: sha256: expected {str(actual)[:16]}... (the checksum of the content), "
                                     f"found {str(data['sha256'])[:16]}...: the file was edited after seqae threshold "
                                     "wrote it; re-run seqae threshold")
        if model_id is not None and data["model_id"] is not None and data["model_id"] != model_id:
            raise bad("model_id", f"{model_id!r} (the model of this directory: a threshold fits one model's errors)",
                      data["model_id"])
        return threshold

    @classmethod
    def _checked_fields(cls, data: dict[str, Any], source: str, bad) -> Threshold:
        try:
            config = ThresholdConfig.from_dict(data["config"], "config")
        except ConfigError as exc:
            raise ThresholdFileError(f"{source}: {exc}; re-run seqae threshold") from exc
        if not _finite(data["threshold"]):
            raise bad("threshold", "a finite number", data["threshold"])
        reference = data["reference"]
        if not isinstance(reference, list) or not reference:
            raise bad("reference", "a non-empty list of the errors fitted on", reference)
        bad_values = [v for v in reference if not _finite(v)]
        if bad_values:
            raise bad("reference", "finite numbers only", bad_values[0])
        reference = np.asarray(reference, dtype=np.float64)
        if (np.diff(reference) < 0).any():
            raise bad("reference", "the errors in ascending order", "a list out of order")
        n_samples = data["n_samples"]
        if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples != len(reference):
            raise bad("n_samples", f"the length of reference ({len(reference)})", n_samples)
        tail = data["tail"]
        if config.method != "auto" and (tail is not None) != (config.method == "pot"):  # auto: either
            raise bad("tail", "the fitted tail (start, shape, scale, share)" if config.method == "pot" else
                      "null (a percentile threshold has no fitted tail)", tail)
        if tail is not None:
            if not isinstance(tail, dict) or sorted(tail) != sorted(TAIL_KEYS):
                raise bad("tail", "an object with start, shape, scale and share", tail)
            for key in TAIL_KEYS:
                if not _finite(tail[key]):
                    raise bad(f"tail.{key}", "a finite number", tail[key])
            if not tail["scale"] > 0 or not 0 < tail["share"] <= 1:
                raise bad("tail.scale" if not tail["scale"] > 0 else "tail.share",
                          "a positive number" if not tail["scale"] > 0 else "a share in (0, 1]",
                          tail["scale"] if not tail["scale"] > 0 else tail["share"])
        if not isinstance(data["fitted_at"], str):
            raise bad("fitted_at", "a time such as 2026-11-29T15:04:05Z", data["fitted_at"])
        threshold = cls(config)
        threshold.threshold_ = float(data["threshold"])
        threshold.n_samples_ = n_samples
        threshold.tail_ = None if tail is None else {k: float(tail[k]) for k in TAIL_KEYS}
        threshold.reference_ = reference
        return threshold

    @classmethod
    def _checked_steps(cls, data: dict[str, Any], source: str,
                       bad) -> tuple[Threshold, tuple[int, ...], tuple[float, ...] | None]:
        steps = data["steps"]
        if not isinstance(steps, dict) or sorted(set(steps) - set(STEPS_OPTIONAL_KEYS)) != sorted(STEPS_KEYS):
            raise bad("steps", f"an object with {', '.join(STEPS_KEYS)} (and optionally "
                               f"{', '.join(STEPS_OPTIONAL_KEYS)})", steps)
        if steps["statistic"] not in STEP_STATISTICS:
            raise bad("steps.statistic", " or ".join(map(repr, STEP_STATISTICS)), steps["statistic"])
        covering = steps["covering_windows"]
        if (not isinstance(covering, list) or not covering
                or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in covering)):
            raise bad("steps.covering_windows", "a list of window counts >= 1", covering)

        def steps_bad(field_name: str, expected: str, found: Any) -> ThresholdFileError:
            return bad(f"steps.{field_name}", expected, found)

        fields = {k: steps[k] for k in ("threshold", "n_samples", "tail", "reference")}
        threshold = cls._checked_fields({**fields, "config": data["config"], "fitted_at": data["fitted_at"]}, source,
                                        steps_bad)
        partial = steps.get("partial_thresholds")
        if partial is not None and (not isinstance(partial, list) or len(partial) != min(covering) - 1
                                    or not all(_finite(v) and v >= 0 for v in partial)):
            raise bad("steps.partial_thresholds", f"a list of {min(covering) - 1} finite thresholds >= 0 (runs of 1 to "
                                                  f"{min(covering) - 1} windows)", partial)
        return threshold, tuple(covering), None if partial is None else tuple(float(v) for v in partial)

    def save(self, model_dir: str | os.PathLike) -> Path | str:
        """Write ``threshold.json`` into ``model_dir``, bound to the model there (its ``model_id``).
        For a model of the long layout, the step threshold is fitted first (``fit_steps``, on the
        errors ``fit`` was given) unless it already is. ``model_dir`` may be a URI: there
        ``seqae.json`` is rewritten last, listing the new file (``seqae.modelstore.add_files``).
        Returns the file (a local path, or its URI).

        Raises:
            SeqaeError: a long-layout model whose held-out windows are too few for a step threshold.
        """
        from seqae.modeldir import ModelInfo
        from seqae.modelstore import add_files, location_of

        location = location_of(model_dir)
        has_model = location.join(names.METADATA_FILE).is_file()
        info = ModelInfo.read(model_dir) if has_model else None
        data = info.data if info is not None else None
        if (data is not None and data.layout == "long" and data.window and data.stride and self.steps_ is None
                and self._errors_in_order is not None):
            self.fit_steps(covering_runs(data.window, data.stride))
        body = self.to_dict(info.model_id if info is not None else None)
        if location.is_local:
            path = Path(location.path if "://" in os.fspath(model_dir) else model_dir) / THRESHOLD_FILE
            write_json(path, body)
            return path
        add_files(location, {THRESHOLD_FILE: json.dumps(body, indent=2, default=str).encode()})
        return location.join(THRESHOLD_FILE).uri

    @classmethod
    def load(cls, model_dir: str | os.PathLike | Location) -> Threshold | None:
        """The threshold stored in a model directory (local or on an object store), or None.

        Raises:
            ThresholdFileError: the file is not what ``seqae threshold`` wrote for this model.
        """
        from seqae.modeldir import ModelInfo

        location = Location.of(model_dir)
        file = location.join(THRESHOLD_FILE)
        if not file.is_file():
            return None
        try:
            data = read_json(file, "threshold file")
        except SeqaeError as exc:
            raise ThresholdFileError(str(exc)) from exc
        model_id = ModelInfo.read(location).model_id if location.join(names.METADATA_FILE).is_file() else None
        return cls.from_dict(data, str(file), model_id)

    def fingerprint(self) -> str:
        """What the fitted state is (the embed outputs' identity): the fit's content, not when or for what."""
        body = self._body()
        return sha256_text(json.dumps({k: body[k] for k in ("config", "threshold", "n_samples", "tail", "reference",
                                                            "steps") if k in body}, sort_keys=True))[:16]
