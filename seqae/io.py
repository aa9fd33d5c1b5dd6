"""Parquet outputs: explicit schemas, metadata under one key, temporary names committed by rename.

The output schema of seqae lives here only. No TensorFlow, no Prefect.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from seqae.data.reader import REJECT_SCHEMA

METADATA_KEY = b"seqae"
REJECTS_DIR = "_rejects"


def with_metadata(schema: pa.Schema, metadata: dict[str, Any]) -> pa.Schema:
    """``schema`` carrying ``metadata`` as JSON under the single key ``seqae``."""
    return schema.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str).encode()})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``seqae`` metadata of a Parquet file written by seqae (footer key-value metadata)."""
    raw = pq.read_metadata(path).metadata or {}
    return json.loads(raw[METADATA_KEY]) if METADATA_KEY in raw else {}


class AtomicParquetWriter:
    """One ``pq.ParquetWriter`` with an explicit schema, writing to a hidden temporary name.

    ``commit()`` renames the finished file into place, so readers never see a partial file;
    ``abort()`` (or leaving the ``with`` block on an exception) removes the temporary file.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, *, row_group_size: int = 65536,
                 compression: str = "zstd"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows = 0
        self._writer = pq.ParquetWriter(self.tmp, schema, compression=compression)

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema) if table.schema != self.schema else table,
                                     row_group_size=self.row_group_size)
            self.rows += table.num_rows

    def commit(self, metadata: dict[str, Any] | None = None) -> Path:
        """Close and rename into place; ``metadata`` (known only at the end, such as row counts) goes
        into the footer under the key ``seqae``."""
        if metadata is not None:
            self._writer.add_key_value_metadata({METADATA_KEY.decode(): json.dumps(metadata, sort_keys=True, default=str)})
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def rejects_path(out_dir: str | os.PathLike, shard_name: str) -> Path:
    return Path(out_dir) / REJECTS_DIR / f"{Path(shard_name).stem}.rejects.parquet"


def write_rejects(out_dir: str | os.PathLike, shard_name: str, rejects: list[pa.Table],
                  metadata: dict[str, Any] | None = None) -> Path | None:
    """Write a shard's rejected rows to ``out_dir/_rejects/<shard>.rejects.parquet`` (none: no file)."""
    tables = [t for t in rejects if t.num_rows]
    path = rejects_path(out_dir, shard_name)
    if not tables:
        path.unlink(missing_ok=True)
        return None
    with AtomicParquetWriter(path, REJECT_SCHEMA) as writer:
        for table in tables:
            writer.write(table)
        return writer.commit(metadata or {})


# --- embeddings -------------------------------------------------------------------------------

def embedding_schema(keys: pa.Schema, passthrough: pa.Schema, embedding_dim: int, *, predicts: bool,
                     step_errors: bool) -> pa.Schema:
    """The output schema of ``seqae embed``, the same for every shard of a run.

    Key columns and passthrough columns keep their input types; then ``embedding``
    (``fixed_size_list<float32>[embedding_dim]``), ``recon_error`` float32, ``pred_error`` float32
    (predicting models only), ``length`` int32 and, when asked, ``step_error`` ``list<float32>``
    (one error per valid step).
    """
    fields = list(keys) + list(passthrough) + [
        pa.field("embedding", pa.list_(pa.float32(), embedding_dim), nullable=False),
        pa.field("recon_error", pa.float32(), nullable=False),
    ]
    if predicts:
        fields.append(pa.field("pred_error", pa.float32(), nullable=False))
    fields.append(pa.field("length", pa.int32(), nullable=False))
    if step_errors:
        fields.append(pa.field("step_error", pa.list_(pa.float32()), nullable=False))
    return pa.schema(fields)


def embedding_table(schema: pa.Schema, keys: pa.Table, passthrough: pa.Table, outputs: dict,
                    lengths) -> pa.Table:
    """Assemble one output batch; ``outputs`` holds numpy arrays in row order."""
    import numpy as np

    n = len(lengths)
    embedding = np.ascontiguousarray(outputs["embedding"], dtype=np.float32)
    columns = [keys.column(i) for i in range(keys.num_columns)]
    columns += [passthrough.column(i) for i in range(passthrough.num_columns)]
    columns.append(pa.FixedSizeListArray.from_arrays(pa.array(embedding.reshape(-1)), embedding.shape[1]))
    columns.append(pa.array(outputs["recon_error"].astype(np.float32, copy=False)))
    if "pred_error" in schema.names:
        columns.append(pa.array(outputs["pred_error"].astype(np.float32, copy=False)))
    columns.append(pa.array(np.asarray(lengths, dtype=np.int32)))
    if "step_error" in schema.names:
        step = outputs["step_error"]
        valid = np.arange(step.shape[1])[None, :] < np.asarray(lengths)[:, None]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        columns.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(step[valid].astype(np.float32))))
    return pa.Table.from_arrays(columns, schema=schema)


def row_group_rows(schema: pa.Schema, target_bytes: int = 64 << 20) -> int:
    """Rows per row group so that one holds about ``target_bytes`` uncompressed (bounded 8 Ki..1 Mi):
    large enough for fast scans in DuckDB/Spark, small enough to stream."""
    width = 0
    for field in schema:
        t = field.type
        if pa.types.is_fixed_size_list(t):
            width += t.list_size * 4
        elif pa.types.is_list(t):
            width += 4 * 256
        else:
            try:
                width += max(t.bit_width // 8, 1)
            except ValueError:  # variable-width (strings, binary): a guess
                width += 16
    return int(min(max(target_bytes // max(width, 1), 8192), 1 << 20))
