"""Arrow list columns to padded numpy arrays, without Python objects on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.types as pat


def is_number(t: pa.DataType) -> bool:
    return pat.is_floating(t) or pat.is_integer(t)


def is_list(t: pa.DataType) -> bool:
    return pat.is_list(t) or pat.is_large_list(t) or pat.is_fixed_size_list(t)


def describe_values_type(t: pa.DataType) -> tuple[int, int | None] | None:
    """Nesting depth and fixed feature count of a values column type, or None if not a sequence type.

    Returns ``(1, None)`` for ``list<number>`` (one feature per step), ``(2, F)`` for
    ``list<fixed_size_list<number>[F]>`` and ``(2, None)`` for ``list<list<number>>``.
    """
    if not is_list(t):
        return None
    inner = t.value_type
    if is_number(inner):
        return (1, None)
    if is_list(inner) and is_number(inner.value_type):
        return (2, inner.list_size if pat.is_fixed_size_list(inner) else None)
    return None


def _offsets_and_child(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Absolute offsets (len(arr) + 1) into ``child`` for any list-like array, slices included."""
    if isinstance(arr, pa.FixedSizeListArray):
        size = arr.type.list_size
        offsets = (np.arange(len(arr) + 1, dtype=np.int64) + arr.offset) * size
        return offsets, arr.values
    offsets = arr.offsets.to_numpy().astype(np.int64, copy=False)
    return offsets, arr.values


@dataclass
class DecodedSequences:
    """A batch of sequences decoded from a list column.

    Attributes:
        values: ``(batch, time, features)`` float32, post-padded with zeros, time = longest row
            (rows over ``max_length`` hold no steps here).
        lengths: ``(batch,)`` int32 steps per row (0 for null rows).
        null_row, null_value, bad_feature_count, non_finite, out_of_range: ``(batch,)`` bool problem
            flags (``out_of_range``: a value's magnitude beyond the limit, including values too large
            for float32; such rows are not also ``non_finite``).
    """

    values: np.ndarray
    lengths: np.ndarray
    null_row: np.ndarray
    null_value: np.ndarray
    bad_feature_count: np.ndarray
    non_finite: np.ndarray
    out_of_range: np.ndarray
    found_features: dict[int, tuple[int, int | str]] = field(default_factory=dict)


def _segment_any(step_flags: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``(rows,)`` bool: whether any step flag is set in each row's segment ``bounds[i]:bounds[i+1]``.

    A cumulative sum instead of ``np.repeat`` of row numbers: one pass, no per-step row index.
    """
    if not step_flags.any():
        return np.zeros(len(bounds) - 1, dtype=bool)
    counts = np.concatenate([[0], np.cumsum(step_flags, dtype=np.int64)])
    return counts[bounds[1:]] > counts[bounds[:-1]]


def over_limit(values: np.ndarray, limit: float) -> np.ndarray:
    """Where a finite float's magnitude exceeds ``limit`` (NaN and infinity are not: they are
    ``non_finite``); same shape as ``values``.

    numpy casts a Python float to the array's type before comparing: a limit beyond that type's range
    (the default 1e30 against float16, 1e300 against float32) would overflow, with a warning. No
    finite value of that type can exceed such a limit, so none is flagged.
    """
    if limit >= float(np.finfo(values.dtype).max):
        return np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return (np.abs(values) > limit) & np.isfinite(values)


def _leaf_numpy(leaf: pa.Array, limit: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The leaf values as float32, and where their magnitude exceeds ``limit`` (checked before the
    cast, so a float64 1e300 is "out of range", not an overflow to infinity); None when none does."""
    values = leaf.to_numpy(zero_copy_only=False) if len(leaf) else np.zeros(0, dtype=np.float32)
    big = None
    if limit is not None and len(values) and values.dtype.kind == "f":
        over = over_limit(values, limit)
        big = over if over.any() else None
    if values.dtype != np.float32:
        with np.errstate(over="ignore"):
            values = values.astype(np.float32)
    return values, big


def decode_sequences(arr: pa.Array, num_features: int, max_abs_value: float | None = None,
                     max_length: int | None = None) -> DecodedSequences:
    """Decode a ``list<number>`` or ``list<list<number>>`` array into a padded float32 array.

    No Python per row. When every row has the same length (fixed-length data such as ECG beats)
    and the steps are plain or fixed-size lists, ``values`` is a reshaped view of Arrow's buffer
    (converted to float32 where the column is another number type). Rows whose flags are set still
    occupy their slot (with arbitrary content); callers filter them.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    null_row = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(n, dtype=bool)
    offsets, child = _offsets_and_child(arr)
    raw_lengths = np.diff(offsets)
    start, stop = int(offsets[0]), int(offsets[-1])
    bounds = offsets - start  # each row's steps in the flat step arrays below
    # Some writers give null rows child slots: those steps belong to no sequence. Rows longer than
    # max_length are left out of the padded array too, so that one outlier cannot inflate it.
    too_long = raw_lengths > max_length if max_length is not None else np.zeros(n, dtype=bool)
    owned = (null_row | too_long) & (raw_lengths > 0)
    step_kept = None
    if owned.any():
        step_kept = np.ones(stop - start, dtype=bool)
        for i in np.flatnonzero(owned):  # only rows that are null *and* own slots (rare)
            step_kept[bounds[i]:bounds[i + 1]] = False
    lengths = np.where(null_row, 0, raw_lengths).astype(np.int32)
    bad_feature_count = np.zeros(n, dtype=bool)
    found_features: dict[int, tuple[int, int | str]] = {}
    step_null = step_big = None
    if is_number(child.type):
        width = 1
        leaf = child.slice(start, stop - start)
        flat, step_big = _leaf_numpy(leaf, max_abs_value)
        flat = flat.reshape(-1, 1)
        if leaf.null_count:
            step_null = leaf.is_null().to_numpy(zero_copy_only=False)
    else:
        width = num_features
        if (pa.types.is_fixed_size_list(child.type) and child.type.list_size == width and not child.null_count):
            leaf = child.values.slice((child.offset + start) * width, (stop - start) * width)
            flat, big = _leaf_numpy(leaf, max_abs_value)
            flat = flat.reshape(-1, width)
            step_big = np.any(big.reshape(-1, width), axis=1) if big is not None else None
            if leaf.null_count:
                step_null = leaf.is_null().to_numpy(zero_copy_only=False).reshape(-1, width).any(axis=1)
        else:
            inner_offsets, leaf_full = _offsets_and_child(child)
            inner_offsets = inner_offsets[start: stop + 1]
            wrong = np.diff(inner_offsets) != width
            if child.null_count:
                wrong |= child.is_null().to_numpy(zero_copy_only=False)[start:stop]
            bad_feature_count = _segment_any(wrong, bounds)
            found_features = _first_wrong_steps(wrong, bounds, np.diff(inner_offsets), child)
            base = int(inner_offsets[0])
            leaf = leaf_full.slice(base, int(inner_offsets[-1]) - base)
            # Steps with a wrong feature count are rejected; point them at slot 0 so the gather stays in range.
            starts = np.where(wrong, 0, inner_offsets[:-1] - base)
            leaf_index = starts[:, None] + np.arange(width, dtype=np.int64)[None, :]
            leaf_values, big = _leaf_numpy(leaf, max_abs_value)
            if len(leaf_values) < width:
                leaf_values, big = np.zeros(width, dtype=np.float32), None
                leaf_index = np.zeros_like(leaf_index)
            flat = leaf_values[leaf_index]
            step_big = np.any(big[leaf_index], axis=1) if big is not None else None
            if leaf.null_count and len(leaf):
                step_null = leaf.is_null().to_numpy(zero_copy_only=False)[leaf_index].any(axis=1)
    null_value = np.zeros(n, dtype=bool)
    if step_null is not None:
        null_value = _segment_any(step_null, bounds)
        flat = np.where(step_null[:, None], np.float32(0), flat)
    bad_step = ~np.isfinite(flat).all(axis=1)
    out_of_range = np.zeros(n, dtype=bool)
    if step_big is not None:
        out_of_range = _segment_any(step_big, bounds) & ~null_value
        bad_step &= ~step_big
    non_finite = _segment_any(bad_step, bounds) & ~null_value & ~out_of_range
    if step_kept is not None:
        flat = flat[step_kept]
    padded = np.where(too_long, 0, lengths)
    max_len = int(padded.max()) if n else 0
    if n and (padded == max_len).all():
        values = flat.reshape(n, max_len, width)  # a view: no padding needed
    else:
        values = np.zeros((n, max_len, width), dtype=np.float32)
        values[np.arange(max_len)[None, :] < padded[:, None]] = flat  # row-major, as the steps lie
    return DecodedSequences(values, lengths, null_row, null_value, bad_feature_count, non_finite, out_of_range,
                            found_features)


def _first_wrong_steps(wrong: np.ndarray, bounds: np.ndarray, inner_lengths: np.ndarray,
                       child: pa.Array) -> dict[int, tuple[int, int | str]]:
    """Per row with a wrong step: (step within the row, features found there or "null")."""
    steps = np.flatnonzero(wrong)
    if not len(steps):
        return {}
    rows = np.searchsorted(bounds, steps, side="right") - 1
    first_rows, first = np.unique(rows, return_index=True)
    start = int(bounds[0])
    found = {}
    for row, step in zip(first_rows.tolist(), steps[first].tolist()):
        is_null = child.null_count and not child[start + step].is_valid
        found[row] = (step - int(bounds[row]), "null" if is_null else int(inner_lengths[step]))
    return found
