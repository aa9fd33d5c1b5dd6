"""Per-timestamp scores of the long layout: each step's errors over every window that covers it.

A window's ``step_error`` says how badly each of its steps was reconstructed, and its window error
(``recon_error``) how badly the window as a whole was; with overlapping windows (``stride < window``)
one time step is scored by several windows. ``StepScores`` folds them into one row per series and
time step:

- ``step_error_mean`` and ``step_error_max``: the mean and the max of the covering windows' step
  errors *at that step*;
- ``window_error_min``: the least of the covering windows' *window* errors, the step's anomaly score.
  A step is anomalous when every window around it is, as a whole: a window that reaches into an
  anomaly raises the mean of every step it covers, normal neighbours included, but not their least,
  since a normal step next to an anomaly is also covered by windows that miss it. This is the
  nearest-window baseline's rule (the matrix profile's distance spread to steps) with seqae's window
  error in place of the distance. It ranks anomalous steps far better than a single step's error,
  which is large wherever the signal is sharp, normal or not, and which depends on where in the
  window the step sits (measured in ``docs/long-series.md``);
- ``window_error_mean``: the mean of the covering windows' window errors (the step score before
  2026-12-04; a step threshold fitted then applies to it);
- ``window_distance_min``: where the model has a bank of training windows (``neighbours.onnx``), the
  least of the covering windows' ``nearest_distance``, each window's distance to its nearest normal
  training window (``seqae.baseline``): the same rule over a distance in place of an error. On the
  long series of ``make quality`` it ranks anomalous steps better than ``window_error_min``
  (docs/long-series.md), and a step threshold fitted on it (``seqae threshold``) makes it the score;
- ``windows``: how many windows covered the step.

The step threshold is fitted on the same statistic over held-out normal windows
(``seqae.thresholds.Threshold.fit_steps``): away from a series' ends a step is covered by a run of
``covering_runs(window, stride)`` consecutive windows, so the held-out windows' errors, in their
series' order, give held-out step scores.

It streams: windows of a series arrive in the order of their start (as the long-layout reader emits
them), so a step is final once a window starting after it has been seen; only the steps of the
current series from its latest window start on are held (at most one window), never the series.

Steps that no accepted window covers (a window rejected for a NaN, ``stride > window``, a dropped
partial tail) get no row: the shard statistics count the uncovered ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from seqae import names
from seqae.data import SequenceBatch

#: What a step row holds, in the run identity: shards whose step rows were written to another format
#: are computed again, never mixed in one folder. 1 (unrecorded): ``window_error_mean`` was the score;
#: 2: ``window_error_min`` is, beside it.
STEPS_FORMAT = 2

#: The step anomaly score's column, and the one before it (beside ``step_error_mean`` and ``step_error_max``).
WINDOW_ERROR_MIN, WINDOW_ERROR_MEAN = names.WINDOW_ERROR_MIN, names.WINDOW_ERROR_MEAN
WINDOW_DISTANCE_MIN = names.WINDOW_DISTANCE_MIN


@dataclass(frozen=True)
class StepRows:
    """Finished steps, in series order then time order."""

    keys: pa.Array
    times: np.ndarray
    mean: np.ndarray  # float32: step_error_mean
    max: np.ndarray  # float32: step_error_max
    windows: np.ndarray  # int32
    window_mean: np.ndarray  # float32: window_error_mean
    window_min: np.ndarray  # float32: window_error_min
    distance_min: np.ndarray | None = None  # float32: window_distance_min (with a bank of training windows)

    def columns(self) -> dict[str, np.ndarray]:
        """The step statistics a step threshold may name, by column name (``seqae.thresholds.step_score``)."""
        out = {WINDOW_ERROR_MIN: self.window_min, WINDOW_ERROR_MEAN: self.window_mean}
        if self.distance_min is not None:
            out[WINDOW_DISTANCE_MIN] = self.distance_min
        return out

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class _Pending:
    """The steps of one series that a later window may still cover: per-step running folds."""

    times: np.ndarray
    step_sum: np.ndarray
    step_max: np.ndarray
    count: np.ndarray
    window_sum: np.ndarray
    window_min: np.ndarray
    distance_min: np.ndarray

    FIELDS = ("times", "step_sum", "step_max", "count", "window_sum", "window_min", "distance_min")

    def take(self, keep: np.ndarray) -> _Pending:
        return _Pending(*(getattr(self, f)[keep] for f in self.FIELDS))


class StepScores:
    """Fold windows' ``step_error`` and window errors into per-step rows, streaming (see the module
    docstring).

    ``add`` takes the windows of one read batch with their step errors (and window errors, and with
    ``distances`` their nearest-window distances) and returns the steps that no later window can cover;
    ``finish`` returns the rest at the end of the shard.
    """

    def __init__(self, key_type: pa.DataType, distances: bool = False):
        self.key_type = key_type
        self.distances = distances
        self._key = None  # the series whose last steps are pending
        self._pending: _Pending | None = None

    def add(self, batch: SequenceBatch, step_error: np.ndarray, window_error: np.ndarray | None = None,
            distance: np.ndarray | None = None) -> StepRows:
        """Fold one read batch.

        Args:
            batch: windows of the long layout, ``batch.times (windows, time)``.
            step_error: ``(windows, time)`` the error of each step of each window (padding ignored).
            window_error: ``(windows,)`` each window's error as thresholds see it (``recon_error``);
                None: the mean of its step errors over its valid steps (the same in the reconstruct
                mode; a predicting mode's step errors also hold the predicted steps).
        """
        if batch.times is None:
            raise ValueError("per-step scores need the long layout (windows carry their step times)")
        n = len(batch)
        if n == 0:
            return self._empty()
        keys = batch.keys.column(0).to_numpy(zero_copy_only=False)
        lengths = batch.lengths
        width = batch.times.shape[1]
        valid = np.arange(width)[None, :] < lengths[:, None]
        step = np.where(valid, step_error[:, :width], 0.0).astype(np.float64)
        if window_error is None:
            window_error = step.sum(axis=1) / np.maximum(lengths, 1)
        new_run = np.r_[True, keys[1:] != keys[:-1]]
        run = np.cumsum(new_run) - 1  # 0, 1, ... per series, in order of appearance in the batch
        run_keys = keys[new_run]
        errors = step[valid]
        per_window = np.broadcast_to(np.asarray(window_error, np.float64)[:, None], valid.shape)[valid]
        near = (np.broadcast_to(np.asarray(distance, np.float64)[:, None], valid.shape)[valid] if self.distances
                else np.zeros(len(errors)))
        steps = _Pending(batch.times[valid], errors, errors, np.ones(len(errors), dtype=np.int64), per_window,
                         per_window, near)
        runs = np.broadcast_to(run[:, None], valid.shape)[valid]
        finished: list[StepRows] = []
        if self._pending is not None:
            if self._key == keys[0]:  # the same series goes on: its pending steps join run 0
                steps = _Pending(*(np.concatenate([getattr(self._pending, f), getattr(steps, f)])
                                   for f in _Pending.FIELDS))
                runs = np.concatenate([np.zeros(len(self._pending.times), dtype=runs.dtype), runs])
            else:
                finished.append(self._flush())
        self._pending = None
        order = np.lexsort((steps.times, runs))
        steps, runs = steps.take(order), runs[order]
        first = np.r_[True, (runs[1:] != runs[:-1]) | (steps.times[1:] != steps.times[:-1])]
        starts = np.flatnonzero(first)
        folded = _Pending(steps.times[starts], np.add.reduceat(steps.step_sum, starts),
                          np.maximum.reduceat(steps.step_max, starts), np.add.reduceat(steps.count, starts),
                          np.add.reduceat(steps.window_sum, starts), np.minimum.reduceat(steps.window_min, starts),
                          np.minimum.reduceat(steps.distance_min, starts))
        g_run = runs[starts]
        # Later windows of the last series start after its last window here: steps up to that start are final.
        hold = (g_run == run[-1]) & (folded.times > batch.times[n - 1, 0])
        self._key = keys[n - 1]
        if hold.any():
            self._pending = folded.take(hold)
        finished.append(self._rows(run_keys[g_run[~hold]], folded.take(~hold)))
        return self._concat(finished)

    def finish(self) -> StepRows:
        """The steps still pending at the end of the shard."""
        if self._pending is None:
            return self._empty()
        return self._flush()

    def _flush(self) -> StepRows:
        pending, self._pending = self._pending, None
        if pending is None:
            return self._empty()
        return self._rows(np.array([self._key] * len(pending.times), dtype=object), pending)

    def _rows(self, keys, folded: _Pending) -> StepRows:
        count = folded.count
        return StepRows(pa.array(keys, self.key_type) if len(keys) else pa.array([], self.key_type), folded.times,
                        (folded.step_sum / count).astype(np.float32), folded.step_max.astype(np.float32),
                        count.astype(np.int32), (folded.window_sum / count).astype(np.float32),
                        folded.window_min.astype(np.float32),
                        folded.distance_min.astype(np.float32) if self.distances else None)

    def _empty(self) -> StepRows:
        return StepRows(pa.array([], self.key_type), np.array([], dtype=np.int64), np.array([], np.float32),
                        np.array([], np.float32), np.array([], np.int32), np.array([], np.float32),
                        np.array([], np.float32), np.array([], np.float32) if self.distances else None)

    def _concat(self, parts: list[StepRows]) -> StepRows:
        parts = [p for p in parts if len(p)]
        if not parts:
            return self._empty()
        if len(parts) == 1:
            return parts[0]
        joined = {f: np.concatenate([getattr(p, f) for p in parts])
                  for f in ("times", "mean", "max", "windows", "window_mean", "window_min")}
        distances = [p.distance_min for p in parts if p.distance_min is not None]
        return StepRows(pa.concat_arrays([p.keys for p in parts]), **joined,
                        distance_min=np.concatenate(distances) if self.distances else None)
