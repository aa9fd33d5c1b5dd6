"""Datasets shipped with seqae, written out as Parquet.

ECG5000 (UCR archive, 2018; see ``ECG5000.md`` beside this file for the source and citation), sequence
layout: 5000 heartbeats of 140 steps, label 1 = normal (2919 rows), 2..5 = abnormal. Rows 0..499 are
the archive's TRAIN file, 500..4999 its TEST file.

UCR anomaly archive series 135 (``UCR_ANOMALY.md``), long layout: one real series of 7501 steps with
one labelled anomaly (``is_anomaly``), a training part without it (steps 0..1199) and a test part.
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
LONG_DATASETS = {"ucr-anomaly": ("ucr_anomaly_135.parquet", 1200)}  # file, first step of the test part

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


def load_long_dataset(name: str) -> pa.Table:
    """The bundled long-layout dataset ``name``: columns ``series``, ``time``, ``value``, ``is_anomaly``."""
    if name not in LONG_DATASETS:
        raise ConfigError(f"dataset: expected one of {', '.join(LONG_DATASETS)}, got {name!r}")
    with resources.as_file(resources.files(__name__) / LONG_DATASETS[name][0]) as path:
        return pq.read_table(path)


def write_long_dataset(name: str, out: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Path]:
    """Write a bundled long-layout dataset as ``out/train/part-00000.parquet`` (the part without
    anomalies, to train on) and ``out/test/part-00000.parquet`` (the rest, labelled per step)."""
    table = load_long_dataset(name)
    split = LONG_DATASETS[name][1]
    out = Path(out)
    written = {}
    for part, piece in (("train", table.slice(0, split)), ("test", table.slice(split))):
        folder = out / part
        folder.mkdir(parents=True, exist_ok=True)
        existing = sorted(folder.glob("*.parquet"))
        if existing and not overwrite:
            raise ConfigError(f"{folder}: already holds {len(existing)} Parquet file(s); pass overwrite=True "
                              "(--overwrite) to replace them")
        for path in existing:
            path.unlink()
        path = folder / "part-00000.parquet"
        with atomic_write(path) as stream:
            pq.write_table(piece, stream, compression="zstd")
        written[part] = path
    return written
