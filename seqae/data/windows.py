"""Long layout: one row per time step, cut into windows of ``window`` steps every ``stride`` steps.

Within a shard, the rows of a series must be contiguous and in increasing time order (as written by
a sort on (series, time)); the reader streams and keeps only the unfinished tail of the current
series, so memory is bounded by the record batch and the window, not by the series length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from seqae.data.batch import SequenceBatch, ShardStats
from seqae.data.config import DataConfig
from seqae.data.rejects import empty_rejects, rejects_table
from seqae.errors import ContractError


class _Series:
    """The not yet windowed tail of one series."""

    def __init__(self, key, times: np.ndarray, values: np.ndarray, rows: np.ndarray):
        self.key = key
        self.times = times
        self.values = values
        self.rows = rows
        self.covered = 0  # leading steps already inside an emitted window
        self.skip = 0  # steps to pass over before the next window starts (stride > window)

    def extend(self, times, values, rows) -> None:
        self.times = np.concatenate([self.times, times])
        self.values = np.concatenate([self.values, values])
        self.rows = np.concatenate([self.rows, rows])


def iter_windows(record_batches: Callable[[list[str]], Iterator[pa.RecordBatch]], schema: pa.Schema,
                 cfg: DataConfig, uri: str, stats: ShardStats) -> Iterator[tuple[SequenceBatch, pa.Table]]:
    """Windows of the long-layout shard ``uri``: ``record_batches(columns)`` streams its rows,
    ``schema`` is its Arrow schema, ``stats`` receives the counts."""
    window, stride = cfg.window, cfg.effective_stride
    limit = cfg.max_abs_value
    time_type = schema.field(cfg.time_column).type
    key_type = schema.field(cfg.key_column).type
    seen: set = set()
    current: _Series | None = None
    out: list[tuple] = []  # (key, start_time, end_time, values, length, row, times)
    rejects: list[pa.Table] = []

    def emit(series: _Series, start: int, stop: int) -> None:
        stats.windows_formed += 1
        out.append((series.key, series.times[start], series.times[stop - 1],
                    series.values[start:stop], stop - start, int(series.rows[start]), series.times[start:stop]))

    def drain(series: _Series, final: bool) -> None:
        # Complete windows first; ``series`` then keeps only what a later window can still use.
        n = len(series.times)
        starts = np.arange(series.skip, max(n - window + 1, series.skip), stride)
        for s in starts:
            emit(series, int(s), int(s) + window)
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
                emit(series, next_start, n)
                covered[next_start:] = True
            stats.steps_uncovered += int((~covered).sum())
            return
        keep_from = min(next_start, n)
        # Steps dropped here that no window covered (gaps when stride > window) can never be covered later.
        stats.steps_uncovered += int((~covered[:keep_from]).sum())
        series.times = series.times[keep_from:]
        series.values = series.values[keep_from:]
        series.rows = series.rows[keep_from:]
        series.covered = max(prefix_end - keep_from, 0)
        series.skip = next_start - keep_from

    def problem(values: np.ndarray) -> str | None:
        if not np.isfinite(values).all():
            return "non_finite"
        if limit is not None and len(values) and np.abs(values).max() > limit:
            return "out_of_range"
        return None

    def flush() -> tuple[SequenceBatch, pa.Table]:
        problems = [problem(w[3]) for w in out]
        good = [w for w, p in zip(out, problems) if p is None]
        bad = [(w, p) for w, p in zip(out, problems) if p is not None]
        table = empty_rejects()
        if bad:
            keys = [f"{w[0]}/{w[1]}/{w[2]}" for w, _ in bad]
            details = {"non_finite": "the window holds NaN, infinity or a null (or a value beyond float32)",
                       "out_of_range": f"expected |value| <= {limit:g} in every step" if limit else ""}
            table = rejects_table(uri, np.array([w[5] for w, _ in bad]), keys,
                                  [cfg.feature_columns[_first_bad(w[3], limit)] for w, _ in bad],
                                  [p for _, p in bad], [details[p] for _, p in bad])
            stats.windows_rejected += len(bad)
            stats.count_reasons([p for _, p in bad])
        all_rejects = pa.concat_tables([*rejects, table]) if rejects else table
        rejects.clear()
        out.clear()
        stats.sequences_out += len(good)
        longest = max((w[4] for w in good), default=0)
        values = np.zeros((len(good), longest, len(cfg.feature_columns)), dtype=np.float32)
        times = np.zeros((len(good), longest), dtype=good[0][6].dtype if good else np.int64)
        for i, w in enumerate(good):
            values[i, : w[4]] = w[3]
            times[i, : w[4]] = w[6]
        keys = pa.table({
            cfg.key_column: pa.array([w[0] for w in good], key_type),
            "window_start": pa.array([w[1] for w in good]).cast(time_type),
            "window_end": pa.array([w[2] for w in good]).cast(time_type),
        })
        batch = SequenceBatch(uri, keys, pa.table({}), values,
                              np.array([w[4] for w in good], dtype=np.int32),
                              np.array([w[5] for w in good], dtype=np.int64), times)
        return batch, all_rejects

    columns = [cfg.key_column, cfg.time_column, *cfg.feature_columns]
    row_base = 0
    for record_batch in record_batches(columns):
        n = record_batch.num_rows
        rows = np.arange(row_base, row_base + n, dtype=np.int64)
        row_base += n
        stats.rows_in += n
        key_col = record_batch.column(cfg.key_column)
        time_col = record_batch.column(cfg.time_column)
        null_key = key_col.is_null().to_numpy(zero_copy_only=False)
        null_time = time_col.is_null().to_numpy(zero_copy_only=False) & ~null_key
        for flags, reason, column in ((null_key, "null_key", cfg.key_column), (null_time, "null_time", cfg.time_column)):
            if flags.any():
                idx = np.flatnonzero(flags)
                keys = key_col.take(pa.array(idx))
                rejects.append(rejects_table(uri, rows[idx], keys, [column] * len(idx), [reason] * len(idx),
                                              [f"the {'key' if reason == 'null_key' else 'time'} is null"] * len(idx)))
                stats.rows_rejected += len(idx)
                stats.count_reasons([reason] * len(idx))
        ok = np.flatnonzero(~(null_key | null_time))
        if len(ok) < n:
            record_batch = record_batch.take(pa.array(ok))
            rows = rows[ok]
        stats.steps_windowed += len(ok)
        if not len(ok):
            continue
        keys = record_batch.column(cfg.key_column).to_numpy(zero_copy_only=False)
        times = record_batch.column(cfg.time_column).to_numpy(zero_copy_only=False)
        values = np.stack([
            _as_float32(record_batch.column(name).to_numpy(zero_copy_only=False))
            for name in cfg.feature_columns
        ], axis=1)
        for a, b in key_runs(keys):
            key = keys[a]
            run_times = times[a:b]
            bad_order = np.flatnonzero(run_times[1:] <= run_times[:-1])
            if current is not None and current.key == key:
                if len(current.times) and run_times[0] <= current.times[-1]:
                    bad_order = np.r_[-1, bad_order]
                if len(bad_order):
                    _unordered(uri, cfg.time_column, key, int(rows[a + bad_order[0] + 1]))
                current.extend(run_times, values[a:b], rows[a:b])
            else:
                if len(bad_order):
                    _unordered(uri, cfg.time_column, key, int(rows[a + bad_order[0] + 1]))
                if current is not None:
                    drain(current, final=True)
                if key in seen:
                    raise ContractError(
                        uri, f"the rows of series {key!r} are not contiguous (row {int(rows[a])})",
                        column=cfg.key_column, expected="each series' rows together, sorted by time",
                        found="the series again after another one", hint="Sort the shard by (series, time)",
                    )
                seen.add(key)
                current = _Series(key, run_times, values[a:b], rows[a:b])
            drain(current, final=False)
        yield flush()
    if current is not None:
        drain(current, final=True)
    if out or rejects:
        yield flush()


def key_runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of equal consecutive keys (a series' rows or windows in order)."""
    if not len(keys):
        return []
    cut = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    return list(zip(np.r_[0, cut].tolist(), np.r_[cut, len(keys)].tolist()))


def _as_float32(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # values beyond float32 become infinity: rejected as non_finite
        return values.astype(np.float32, copy=False)


def _first_bad(values: np.ndarray, limit: float | None) -> int:
    """The first feature column holding a non-finite or out-of-range value."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | ((np.abs(values) > limit) if limit is not None else False)
    return int(np.flatnonzero(bad.any(axis=0))[0])


def _unordered(uri: str, column: str, key, row: int) -> None:
    raise ContractError(
        uri, f"row {row}: time does not increase within series {key!r}", column=column,
        expected="strictly increasing times within each series", found="a time equal to or before the previous one",
        hint="Sort the shard by (series, time) and remove duplicate steps",
    )
