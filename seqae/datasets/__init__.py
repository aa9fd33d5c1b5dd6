"""Datasets shipped with seqae, written out in the sequence layout.

ECG5000 (UCR archive, 2018; see ``ECG5000.md`` beside this file for the source and citation):
5000 heartbeats of 140 steps, label 1 = normal (2919 rows), 2..5 = abnormal. Rows 0..499 are the
archive's TRAIN file, 500..4999 its TEST file.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from seqae.errors import ConfigError
from seqae.storage import atomic_write

DATASETS = {"ecg5000": "ecg5000.parquet"}

SEQUENCE_SCHEMA = pa.schema([
    pa.field("id", pa.int64(), nullable=False),
    pa.field("label", pa.int32(), nullable=False),
    pa.field("values", pa.list_(pa.float32())),
])


def load_dataset(name: str) -> pa.Table:
    """The bundled dataset ``name`` as an Arrow table with columns ``id``, ``label``, ``values``."""
    if name not in DATASETS:
        raise ConfigError(f"dataset: expected one of {', '.join(DATASETS)}, got {name!r}")
    with resources.as_file(resources.files(__name__) / DATASETS[name]) as path:
        return pq.read_table(path).cast(SEQUENCE_SCHEMA)


def write_dataset(name: str, out: str | os.PathLike, *, shards: int = 1, overwrite: bool = False) -> list[Path]:
    """Write a bundled dataset as ``shards`` Parquet files ``part-00000.parquet``... under ``out``.

    Rows are split in order into shards of near-equal size (zstd, one row group per shard).

    Raises:
        ConfigError: ``shards`` is not a positive integer, or ``out`` holds Parquet files and
            ``overwrite`` is not set.
    """
    if not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"shards: expected a positive integer, got {shards!r}")
    table = load_dataset(name)
    if shards > table.num_rows:
        raise ConfigError(f"shards: expected at most {table.num_rows} (one row per shard), got {shards}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob("*.parquet"))
    if existing and not overwrite:
        raise ConfigError(f"{out}: already holds {len(existing)} Parquet file(s); pass overwrite=True (--overwrite) to replace them")
    for path in existing:
        path.unlink()
    bounds = [round(i * table.num_rows / shards) for i in range(shards + 1)]
    paths = []
    for i in range(shards):
        path = out / f"part-{i:05d}.parquet"
        with atomic_write(path) as stream:
            pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), stream, compression="zstd")
        paths.append(path)
    return paths
