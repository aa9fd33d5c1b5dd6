"""Per-timestamp scores of the long layout: each step's errors over every window that covers it.

A window's ``step_error`` says how badly each of its steps was reconstructed; with overlapping windows
(``stride < window``) one time step is scored by several windows. ``StepScores`` folds them into one
row per series and time step: the mean and the max of those step errors and how many windows covered
the step. It streams: windows of a series arrive in the order of their start (as the long-layout
reader emits them), so a step is final once a window starting after it has been seen; only the steps
of the current series from its latest window start on are held (at most one window), never the series.

Steps that no accepted window covers (a window rejected for a NaN, ``stride > window``, a dropped
partial tail) get no row: the shard statistics count the uncovered ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from seqae.data import SequenceBatch


@dataclass(frozen=True)
class StepRows:
    """Finished steps, in series order then time order."""

    keys: pa.Array
    times: np.ndarray
    mean: np.ndarray  # float32
    max: np.ndarray  # float32
    windows: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.times)


class StepScores:
    """Fold windows' ``step_error`` into per-step rows, streaming (see the module docstring).

    ``add`` takes the windows of one read batch with their step errors and returns the steps that no
    later window can cover; ``finish`` returns the rest at the end of the shard.
    """

    def __init__(self, key_type: pa.DataType):
        self.key_type = key_type
        self._key = None  # the series whose last steps are pending
        self._pending: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # time, sum, max, count

    def add(self, batch: SequenceBatch, step_error: np.ndarray) -> StepRows:
        if batch.times is None:
            raise ValueError("per-step scores need the long layout (windows carry their step times)")
        n = len(batch)
        if n == 0:
            return self._empty()
        keys = batch.keys.column(0).to_numpy(zero_copy_only=False)
        lengths = batch.lengths
        valid = np.arange(batch.times.shape[1])[None, :] < lengths[:, None]
        new_run = np.r_[True, keys[1:] != keys[:-1]]
        run = np.cumsum(new_run) - 1  # 0, 1, ... per series, in order of appearance in the batch
        run_keys = keys[new_run]
        times = batch.times[valid]
        errors = step_error[:, : batch.times.shape[1]][valid].astype(np.float64)
        runs = np.broadcast_to(run[:, None], valid.shape)[valid]
        sums, maxes, counts = errors, errors, np.ones(len(errors), dtype=np.int64)
        finished: list[StepRows] = []
        if self._pending is not None:
            if self._key == keys[0]:  # the same series goes on: its pending steps join run 0
                p_time, p_sum, p_max, p_count = self._pending
                times = np.concatenate([p_time, times])
                runs = np.concatenate([np.zeros(len(p_time), dtype=runs.dtype), runs])
                sums = np.concatenate([p_sum, sums])
                maxes = np.concatenate([p_max, maxes])
                counts = np.concatenate([p_count, counts])
            else:
                finished.append(self._flush())
        self._pending = None
        order = np.lexsort((times, runs))
        times, runs, sums, maxes, counts = times[order], runs[order], sums[order], maxes[order], counts[order]
        first = np.r_[True, (runs[1:] != runs[:-1]) | (times[1:] != times[:-1])]
        starts = np.flatnonzero(first)
        g_time, g_run = times[starts], runs[starts]
        g_sum = np.add.reduceat(sums, starts)
        g_max = np.maximum.reduceat(maxes, starts)
        g_count = np.add.reduceat(counts, starts)
        # Later windows of the last series start after its last window here: steps up to that start are final.
        last_start = batch.times[n - 1, 0]
        hold = (g_run == run[-1]) & (g_time > last_start)
        done = ~hold
        self._key = keys[n - 1]
        if hold.any():
            self._pending = (g_time[hold], g_sum[hold], g_max[hold], g_count[hold])
        finished.append(self._rows(run_keys[g_run[done]], g_time[done], g_sum[done], g_max[done], g_count[done]))
        return self._concat(finished)

    def finish(self) -> StepRows:
        """The steps still pending at the end of the shard."""
        if self._pending is None:
            return self._empty()
        return self._flush()

    def _flush(self) -> StepRows:
        p_time, p_sum, p_max, p_count = self._pending
        self._pending = None
        return self._rows(np.array([self._key] * len(p_time), dtype=object), p_time, p_sum, p_max, p_count)

    def _rows(self, keys, times, sums, maxes, counts) -> StepRows:
        return StepRows(pa.array(keys, self.key_type) if len(keys) else pa.array([], self.key_type), times,
                        (sums / counts).astype(np.float32), maxes.astype(np.float32), counts.astype(np.int32))

    def _empty(self) -> StepRows:
        return StepRows(pa.array([], self.key_type), np.array([], dtype=np.int64), np.array([], np.float32),
                        np.array([], np.float32), np.array([], np.int32))

    def _concat(self, parts: list[StepRows]) -> StepRows:
        parts = [p for p in parts if len(p)]
        if not parts:
            return self._empty()
        if len(parts) == 1:
            return parts[0]
        return StepRows(pa.concat_arrays([p.keys for p in parts]), np.concatenate([p.times for p in parts]),
                        np.concatenate([p.mean for p in parts]), np.concatenate([p.max for p in parts]),
                        np.concatenate([p.windows for p in parts]))
