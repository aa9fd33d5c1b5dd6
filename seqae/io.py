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
    """The ``seqae`` metadata of a Parquet file written by seqae."""
    raw = pq.read_schema(path).metadata or {}
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

    def commit(self) -> Path:
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
    with AtomicParquetWriter(path, with_metadata(REJECT_SCHEMA, metadata or {})) as writer:
        for table in tables:
            writer.write(table)
        return writer.commit()
