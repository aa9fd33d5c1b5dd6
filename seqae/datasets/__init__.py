"""Datasets shipped with seqae, written out as Parquet to a local folder or any URI seqae writes
(``s3://bucket/prefix``, ``file://``, whatever ``pyarrow.fs`` opens; credentials in a URI refused).

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
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from seqae.errors import ConfigError
from seqae.modelstore import require_bucket
from seqae.storage import Location, atomic_write, has_uri_scheme, redact_uri

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


def _output_folder(out: str | os.PathLike) -> Location:
    """``out`` as a ``Location``, its bucket checked to exist. Text that holds ``://`` without being
    a URI (`` s3://b``) is refused: never a local folder named ``s3:``."""
    text = os.fspath(out)
    if "://" in text and not has_uri_scheme(text):
        raise ConfigError(f"{redact_uri(text)}: expected a local path or a URI such as s3://bucket/prefix, found "
                          "text that holds '://' without being a URI")
    return require_bucket(text, "the dataset")


def _written(out: str | os.PathLike, folder: Location, *parts: str) -> Path | str:
    """A written file as the caller named its folder: a ``Path`` on the local disk (relative when
    ``out`` was), its URI elsewhere."""
    if not folder.is_local:
        return folder.join(*parts).uri
    return Path(folder.path if has_uri_scheme(os.fspath(out)) else out, *parts)


def _clear(folder: Location, overwrite: bool) -> None:
    """Remove the Parquet files directly in ``folder`` when ``overwrite``; refuse them otherwise."""
    existing = [info.path for info in folder.children()
                if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")]
    if existing and not overwrite:
        raise ConfigError(f"{folder}: already holds {len(existing)} Parquet file(s); pass overwrite=True "
                          "(--overwrite) to replace them")
    for path in existing:
        folder.filesystem.delete_file(path)


def write_dataset(name: str, out: str | os.PathLike, *, shards: int = 1,
                  overwrite: bool = False) -> list[Path | str]:
    """Write a bundled dataset as ``shards`` Parquet files ``part-00000.parquet``... under ``out``.

    Rows are split in order into shards of near-equal size (zstd, one row group per shard).

    Args:
        out: a local folder or a URI (``s3://bucket/shards``); a URI's bucket must exist.

    Returns:
        The files written: ``Path`` objects under a local path, URIs under a URI.

    Raises:
        ConfigError: ``shards`` is not a positive integer, or ``out`` holds Parquet files and
            ``overwrite`` is not set.
        SeqaeError: credentials in a URI, a bucket that does not exist or cannot be reached.
    """
    if not isinstance(shards, int) or shards < 1:
        raise ConfigError(f"shards: expected a positive integer, got {shards!r}")
    table = load_dataset(name)
    if shards > table.num_rows:
        raise ConfigError(f"shards: expected at most {table.num_rows} (one row per shard), got {shards}")
    folder = _output_folder(out)
    _clear(folder, overwrite)
    bounds = [round(i * table.num_rows / shards) for i in range(shards + 1)]
    paths = []
    for i in range(shards):
        file = f"part-{i:05d}.parquet"
        with atomic_write(folder.join(file)) as stream:
            pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), stream, compression="zstd")
        paths.append(_written(out, folder, file))
    return paths


def load_long_dataset(name: str) -> pa.Table:
    """The bundled long-layout dataset ``name``: columns ``series``, ``time``, ``value``, ``is_anomaly``."""
    if name not in LONG_DATASETS:
        raise ConfigError(f"dataset: expected one of {', '.join(LONG_DATASETS)}, got {name!r}")
    with resources.as_file(resources.files(__name__) / LONG_DATASETS[name][0]) as path:
        return pq.read_table(path)


def write_long_dataset(name: str, out: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Path | str]:
    """Write a bundled long-layout dataset as ``out/train/part-00000.parquet`` (the part without
    anomalies, to train on) and ``out/test/part-00000.parquet`` (the rest, labelled per step).
    ``out`` is a local folder or a URI, as for ``write_dataset``; both folders are checked before
    either is written."""
    table = load_long_dataset(name)
    split = LONG_DATASETS[name][1]
    folder = _output_folder(out)
    parts = {"train": table.slice(0, split), "test": table.slice(split)}
    for part in parts:  # both refused, or both cleared, before either is written
        _clear(folder.join(part), overwrite)
    written = {}
    for part, piece in parts.items():
        with atomic_write(folder.join(part, "part-00000.parquet")) as stream:
            pq.write_table(piece, stream, compression="zstd")
        written[part] = _written(out, folder, part, "part-00000.parquet")
    return written
