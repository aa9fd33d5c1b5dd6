"""Arrow list columns to padded numpy arrays, without Python objects on the hot path."""

from __future__ import annotations

from dataclasses import dataclass

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
        values: ``(batch, time, features)`` float32, post-padded with zeros, time = longest row.
        lengths: ``(batch,)`` int32 valid steps per row (0 for null rows).
        null_row, null_value, bad_feature_count, non_finite: ``(batch,)`` bool problem flags.
    """

    values: np.ndarray
    lengths: np.ndarray
    null_row: np.ndarray
    null_value: np.ndarray
    bad_feature_count: np.ndarray
    non_finite: np.ndarray


def _rows_with(step_flags: np.ndarray, row_of_step: np.ndarray, num_rows: int) -> np.ndarray:
    if not step_flags.any():
        return np.zeros(num_rows, dtype=bool)
    return np.bincount(row_of_step[step_flags], minlength=num_rows) > 0


def decode_sequences(arr: pa.Array, num_features: int) -> DecodedSequences:
    """Decode a ``list<number>`` or ``list<list<number>>`` array into a padded float32 array.

    Rows whose flags are set still occupy their slot (with arbitrary content); callers filter them.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    null_row = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else np.zeros(n, dtype=bool)
    offsets, child = _offsets_and_child(arr)
    lengths = np.diff(offsets).astype(np.int32)
    lengths[null_row] = 0
    start, stop = int(offsets[0]), int(offsets[-1])
    total = stop - start
    row_of_step = np.repeat(np.arange(n, dtype=np.int64), lengths)
    # Null rows may still own child slots in some writers; keep only the slots of real rows.
    step_index = np.repeat(offsets[:-1] - start, lengths) + (
        np.arange(len(row_of_step), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    )
    bad_feature_count = np.zeros(n, dtype=bool)
    if is_number(child.type):
        width = 1
        leaf = child.slice(start, total)
        leaf_index = step_index[:, None]
    else:
        inner_offsets, leaf_full = _offsets_and_child(child)
        inner_offsets = inner_offsets[start: stop + 1]
        inner_lengths = np.diff(inner_offsets)[step_index]
        wrong = inner_lengths != num_features
        inner_null = child.is_null().to_numpy(zero_copy_only=False)[start:stop][step_index] if child.null_count else None
        if inner_null is not None:
            wrong |= inner_null
        bad_feature_count = _rows_with(wrong, row_of_step, n)
        width = num_features
        base = int(inner_offsets[0])
        leaf = leaf_full.slice(base, int(inner_offsets[-1]) - base)
        starts = inner_offsets[:-1][step_index] - base
        # Rows with a wrong feature count are rejected; clamp their indices so the gather stays in range.
        starts = np.where(wrong, 0, starts)
        leaf_index = starts[:, None] + np.arange(width, dtype=np.int64)[None, :]
        if len(leaf) < width:
            leaf_index = np.zeros_like(leaf_index)
    leaf_values = leaf.to_numpy(zero_copy_only=False) if len(leaf) else np.zeros(max(width, 1), dtype=np.float32)
    if leaf_values.dtype != np.float32:
        leaf_values = leaf_values.astype(np.float32)
    if leaf.null_count:
        # Nulls in an integer column come back as floats with NaN; in a float column as NaN too.
        leaf_nulls = leaf.is_null().to_numpy(zero_copy_only=False)
    else:
        leaf_nulls = None
    flat = leaf_values[leaf_index] if len(leaf) else np.zeros((len(step_index), width), dtype=np.float32)
    null_value = np.zeros(n, dtype=bool)
    if leaf_nulls is not None and len(leaf):
        step_null = leaf_nulls[leaf_index].any(axis=1)
        null_value = _rows_with(step_null, row_of_step, n)
        flat = np.where(leaf_nulls[leaf_index], np.float32(0), flat)
    non_finite = _rows_with(~np.isfinite(flat).all(axis=1), row_of_step, n) & ~null_value
    max_len = int(lengths.max()) if n else 0
    if n and (lengths == max_len).all():
        values = flat.reshape(n, max_len, width)
    else:
        values = np.zeros((n, max_len, width), dtype=np.float32)
        step_in_row = np.arange(len(row_of_step), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        values[row_of_step, step_in_row] = flat
    return DecodedSequences(values, lengths, null_row, null_value, bad_feature_count, non_finite)


def pad_batch(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Trim the time axis of a padded ``(batch, time, features)`` array to its longest row."""
    longest = int(lengths.max()) if len(lengths) else 0
    return values[:, :longest] if values.shape[1] > longest else values
