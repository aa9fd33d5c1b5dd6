"""Rejected rows: the fixed reasons and the one table schema every reject output uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Why a row was rejected. Fixed words, so that rejects can be grouped and counted downstream.
REJECT_REASONS = {
    "null_key": "the key is null",
    "null_sequence": "the sequence is null",
    "null_value": "the sequence holds a null value",
    "feature_count": "a step has the wrong number of features",
    "non_finite": "the sequence holds NaN or infinity",
    "out_of_range": "a value's magnitude is beyond max_abs_value (a sentinel such as float32-max?)",
    "empty": "the sequence has no steps",
    "too_short": "the sequence is shorter than min_length",
    "too_long": "the sequence is longer than max_length",
    "null_time": "the time is null",
}

REJECT_SCHEMA = pa.schema([
    pa.field("shard", pa.string(), nullable=False),
    pa.field("row", pa.int64(), nullable=False),
    pa.field("key", pa.string()),
    pa.field("column", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
])


def rejects_table(shard: str, rows: np.ndarray, keys: pa.Array | pa.ChunkedArray | Sequence,
                  columns: Sequence[str], reasons: Sequence[str], details: Sequence[str]) -> pa.Table:
    """One row per rejected input row; keys are written as text (the key types of shards differ)."""
    if isinstance(keys, (pa.Array, pa.ChunkedArray)):
        key_array = keys_as_text(keys)
    else:
        key_array = pa.array(keys, pa.string())
    return pa.table({
        "shard": pa.array([shard] * len(rows), pa.string()),
        "row": pa.array(np.asarray(rows, dtype=np.int64)),
        "key": key_array,
        "column": pa.array(columns, pa.string()),
        "reason": pa.array(reasons, pa.string()),
        "detail": pa.array(details, pa.string()),
    }, schema=REJECT_SCHEMA)


def keys_as_text(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Keys of any type as text: cast where Arrow can; binary keys as hex, other types (structs,
    lists) as their Python repr. Only rejected rows come here, so a loop over them is fine."""
    if pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type):
        return pc.cast(keys, pa.string())
    if pa.types.is_binary(keys.type) or pa.types.is_large_binary(keys.type) or pa.types.is_fixed_size_binary(keys.type):
        return pa.array([None if k is None else k.hex() for k in keys.to_pylist()], pa.string())
    try:
        return pc.cast(keys, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([None if k is None else repr(k) for k in keys.to_pylist()], pa.string())


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()
