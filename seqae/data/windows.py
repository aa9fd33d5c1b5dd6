"""Long layout: one row per time step, cut into windows of ``window`` steps every ``stride`` steps.

Within a shard, the rows of a series must be contiguous and in strictly increasing time order (as
written by a sort on (series, time)); the reader streams and keeps only the unfinished tail of the
current series, so memory is bounded by the record batch and the window, not by the series length.
What is accepted or rejected never depends on where the record batches happen to be cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from seqae.data.arrays import over_limit
from seqae.data.batch import SequenceBatch, ShardStats
from seqae.data.config import DataConfig
from seqae.data.rejects import empty_rejects, rejects_table
from seqae.errors import ContractError


class Window(NamedTuple):
    """One window cut from a series, before its values are checked.

    Attributes:
        key: the series key.
        start, end: the times of its first and last steps.
        values: ``(length, features)`` float32.
        times: ``(length,)`` the time of each step, in the time column's numpy type.
        row: the shard row of its first step.
    """

    key: Any
    start: Any
    end: Any
    values: np.ndarray
    times: np.ndarray
    row: int

    @property
    def length(self) -> int:
        return len(self.times)


class _Series:
    """The not yet windowed tail of one series, and the time of its last step read so far."""

    def __init__(self, key, times: np.ndarray, values: np.ndarray, rows: np.ndarray):
        self.key = key
        self.times = times
        self.values = values
        self.rows = rows
        self.last_time = times[-1]  # the tail may be empty once windows took every step: order needs this
        self.covered = 0  # leading steps already inside an emitted window
        self.skip = 0  # steps to pass over before the next window starts (stride > window)

    def extend(self, times, values, rows) -> None:
        self.times = np.concatenate([self.times, times])
        self.values = np.concatenate([self.values, values])
        self.rows = np.concatenate([self.rows, rows])
        self.last_time = times[-1]

    def keep_from(self, start: int) -> None:
        self.times = self.times[start:]
        self.values = self.values[start:]
        self.rows = self.rows[start:]


class WindowCutter:
    """Cuts the rows of one long-layout shard into windows, in the order the rows come.

    ``add(record_batch)`` takes the next rows (``columns`` of them); ``flush()`` hands over the
    windows and rejects gathered since the last flush; ``finish()`` closes the last series.

    Raises:
        ContractError: a series' rows are not contiguous, or its times do not strictly increase
            (whatever the record batch boundaries).
    """

    def __init__(self, cfg: DataConfig, schema: pa.Schema, uri: str, stats: ShardStats):
        self.cfg = cfg
        self.uri = uri
        self.stats = stats
        self.feature_columns, self.window = cfg.long_layout()
        self.columns = [cfg.key_column, cfg.time_column, *self.feature_columns]
        self._time_type = schema.field(cfg.time_column).type
        self._key_type = schema.field(cfg.key_column).type
        self._seen: set = set()
        self._current: _Series | None = None
        self._windows: list[Window] = []
        self._rejects: list[pa.Table] = []
        self._row_base = 0

    @property
    def pending(self) -> bool:
        return bool(self._windows or self._rejects)

    # -- rows --------------------------------------------------------------------------------
    def add(self, record_batch: pa.RecordBatch) -> None:
        cfg = self.cfg
        n = record_batch.num_rows
        rows = np.arange(self._row_base, self._row_base + n, dtype=np.int64)
        self._row_base += n
        self.stats.rows_in += n
        rejected = self._reject_rows(record_batch, rows)
        if rejected.any():
            ok = np.flatnonzero(~rejected)
            record_batch, rows = record_batch.take(pa.array(ok)), rows[ok]
        self.stats.steps_windowed += len(rows)
        if not len(rows):
            return
        keys = record_batch.column(cfg.key_column).to_numpy(zero_copy_only=False)
        times = record_batch.column(cfg.time_column).to_numpy(zero_copy_only=False)
        values = np.stack([_as_float32(record_batch.column(name).to_numpy(zero_copy_only=False))
                           for name in self.feature_columns], axis=1)
        for a, b in key_runs(keys):
            self._add_run(keys[a], times[a:b], values[a:b], rows[a:b])

    def _reject_rows(self, record_batch: pa.RecordBatch, rows: np.ndarray) -> np.ndarray:
        """Reject rows whose key or time is null or NaN (a NaN equals nothing, so it names no series
        and orders no step); ``(rows,)`` bool, where rejected."""
        cfg = self.cfg
        key_col = record_batch.column(cfg.key_column)
        time_col = record_batch.column(cfg.time_column)
        null_key, nan_key = _null_and_nan(key_col)
        bad_key = null_key | nan_key
        null_time, nan_time = (flags & ~bad_key for flags in _null_and_nan(time_col))
        for flags, reason, column, detail in (
            (null_key, "null_key", cfg.key_column, "the key is null"),
            (nan_key, "null_key", cfg.key_column, "the key is NaN"),
            (null_time, "null_time", cfg.time_column, "the time is null"),
            (nan_time, "null_time", cfg.time_column, "the time is NaN"),
        ):
            if flags.any():
                idx = np.flatnonzero(flags)
                self._rejects.append(rejects_table(self.uri, rows[idx], key_col.take(pa.array(idx)),
                                                   [column] * len(idx), [reason] * len(idx), [detail] * len(idx)))
                self.stats.rows_rejected += len(idx)
                self.stats.count_reasons([reason] * len(idx))
        return bad_key | null_time | nan_time

    def _add_run(self, key, times: np.ndarray, values: np.ndarray, rows: np.ndarray) -> None:
        """Consecutive rows of one series: the current one continued, or a new one begun."""
        previous = self._current
        current = previous if previous is not None and previous.key == key else None
        if current is None and key in self._seen:
            raise ContractError(
                self.uri, f"the rows of series {key!r} are not contiguous (row {int(rows[0])})",
                column=self.cfg.key_column, expected="each series' rows together, sorted by time",
                found="the series again after another one", hint="Sort the shard by (series, time)",
            )
        back = np.flatnonzero(times[1:] <= times[:-1]) + 1
        if current is not None and times[0] <= current.last_time:
            back = np.r_[0, back]
        if len(back):
            self._unordered(key, int(rows[back[0]]))
        if current is not None:
            current.extend(times, values, rows)
        else:
            if previous is not None:
                self._drain(previous, final=True)
            self._seen.add(key)
            current = self._current = _Series(key, times, values, rows)
        self._drain(current, final=False)

    def _unordered(self, key, row: int) -> NoReturn:
        raise ContractError(
            self.uri, f"row {row}: time does not increase within series {key!r}", column=self.cfg.time_column,
            expected="strictly increasing times within each series",
            found="a time equal to or before the previous one",
            hint="Sort the shard by (series, time) and remove duplicate steps",
        )

    def finish(self) -> None:
        if self._current is not None:
            self._drain(self._current, final=True)
            self._current = None

    # -- windows -----------------------------------------------------------------------------
    def _emit(self, series: _Series, start: int, stop: int) -> None:
        self.stats.windows_formed += 1
        self._windows.append(Window(series.key, series.times[start], series.times[stop - 1],
                                    series.values[start:stop], series.times[start:stop], int(series.rows[start])))

    def _drain(self, series: _Series, final: bool) -> None:
        """Emit the complete windows of ``series``; it then keeps only what a later window can still use
        (``final``: the series has ended, so its trailing steps make a partial window or none)."""
        cfg, stats = self.cfg, self.stats
        window, stride = self.window, cfg.effective_stride
        n = len(series.times)
        starts = np.arange(series.skip, max(n - window + 1, series.skip), stride)
        for s in starts:
            self._emit(series, int(s), int(s) + window)
        next_start = int(starts[-1]) + stride if len(starts) else series.skip
        # Which steps some window covers: the prefix covered before, and every window emitted now.
        cover = np.zeros(n + 1, dtype=np.int64)
        cover[0] += 1
        cover[min(series.covered, n)] -= 1
        np.add.at(cover, starts, 1)
        np.add.at(cover, np.minimum(starts + window, n), -1)
        covered = np.cumsum(cover)[:n] > 0
        prefix_end = max(series.covered, int(starts[-1]) + window if len(starts) else 0)
        if final:
            if next_start < n and prefix_end < n and cfg.partial_windows == "keep" and n - next_start >= cfg.min_length:
                self._emit(series, next_start, n)
                covered[next_start:] = True
            stats.steps_uncovered += int((~covered).sum())
            return
        keep_from = min(next_start, n)
        # Steps dropped here that no window covered (gaps when stride > window) can never be covered later.
        stats.steps_uncovered += int((~covered[:keep_from]).sum())
        series.keep_from(keep_from)
        series.covered = max(prefix_end - keep_from, 0)
        series.skip = next_start - keep_from

    def _problem(self, values: np.ndarray) -> str | None:
        if not np.isfinite(values).all():
            return "non_finite"
        if self.cfg.max_abs_value is not None and over_limit(values, self.cfg.max_abs_value).any():
            return "out_of_range"
        return None

    def flush(self) -> tuple[SequenceBatch, pa.Table]:
        """The windows cut since the last flush, checked: ``(accepted windows, rejects)``."""
        cfg, stats, limit = self.cfg, self.stats, self.cfg.max_abs_value
        problems = [self._problem(w.values) for w in self._windows]
        good = [w for w, p in zip(self._windows, problems) if p is None]
        bad = [(w, p) for w, p in zip(self._windows, problems) if p is not None]
        table = empty_rejects()
        if bad:
            details = {"non_finite": "the window holds NaN, infinity or a null (or a value beyond float32)",
                       "out_of_range": f"expected |value| <= {limit:g} in every step" if limit else ""}
            table = rejects_table(self.uri, np.array([w.row for w, _ in bad]),
                                  [f"{w.key}/{w.start}/{w.end}" for w, _ in bad],
                                  [self.feature_columns[_first_bad(w.values, limit)] for w, _ in bad],
                                  [p for _, p in bad], [details[p] for _, p in bad])
            stats.windows_rejected += len(bad)
            stats.count_reasons([p for _, p in bad])
        all_rejects = pa.concat_tables([*self._rejects, table]) if self._rejects else table
        self._rejects.clear()
        self._windows.clear()
        stats.sequences_out += len(good)
        longest = max((w.length for w in good), default=0)
        values = np.zeros((len(good), longest, len(self.feature_columns)), dtype=np.float32)
        times = np.zeros((len(good), longest), dtype=good[0].times.dtype if good else np.int64)
        for i, w in enumerate(good):
            values[i, : w.length] = w.values
            times[i, : w.length] = w.times
        keys = pa.table({
            cfg.key_column: pa.array([w.key for w in good], self._key_type),
            "window_start": pa.array([w.start for w in good]).cast(self._time_type),
            "window_end": pa.array([w.end for w in good]).cast(self._time_type),
        })
        batch = SequenceBatch(self.uri, keys, pa.table({}), values,
                              np.array([w.length for w in good], dtype=np.int32),
                              np.array([w.row for w in good], dtype=np.int64), times)
        return batch, all_rejects


def iter_windows(record_batches: Callable[[list[str]], Iterator[pa.RecordBatch]], schema: pa.Schema,
                 cfg: DataConfig, uri: str, stats: ShardStats) -> Iterator[tuple[SequenceBatch, pa.Table]]:
    """Windows of the long-layout shard ``uri``, one ``(SequenceBatch, rejects)`` per record batch:
    ``record_batches(columns)`` streams its rows, ``schema`` is its Arrow schema, ``stats`` receives
    the counts. See ``WindowCutter``."""
    cutter = WindowCutter(cfg, schema, uri, stats)
    for record_batch in record_batches(cutter.columns):
        cutter.add(record_batch)
        yield cutter.flush()
    cutter.finish()
    if cutter.pending:
        yield cutter.flush()


def key_runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of equal consecutive keys (a series' rows or windows in order)."""
    if not len(keys):
        return []
    cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return list(zip(np.r_[0, cut].tolist(), np.r_[cut, len(keys)].tolist()))


def _null_and_nan(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(rows,)`` bool each: where ``column`` is null, and where it is a NaN float."""
    null = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(column.type):
        nan = pc.fill_null(pc.is_nan(column), False).to_numpy(zero_copy_only=False)
    else:
        nan = np.zeros(len(column), dtype=bool)
    return null, nan


def _as_float32(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # values beyond float32 become infinity: rejected as non_finite
        return values.astype(np.float32, copy=False)


def _first_bad(values: np.ndarray, limit: float | None) -> int:
    """The first feature column holding a non-finite or out-of-range value."""
    bad = ~np.isfinite(values)
    if limit is not None:
        bad |= over_limit(values, limit)
    return int(np.flatnonzero(bad.any(axis=0))[0])
