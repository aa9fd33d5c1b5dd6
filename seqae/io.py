"""Parquet outputs: explicit schemas, metadata under one key, temporary names committed by rename.

The output schema of seqae lives here only: ``OUTPUT_COLUMNS`` (the embed output) and
``STEP_SCORE_COLUMNS`` (the per-timestamp output) declare each column once, its name, Arrow type,
when it is present and how its values are made, and build both the schema and every table written
in it. No TensorFlow, no Prefect.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqae import names
from seqae.config import MODES
from seqae.data import Shard
from seqae.data.rejects import REJECT_SCHEMA
from seqae.errors import ConfigError
from seqae.storage import AtomicFile, Location, sha256_text

METADATA_KEY = names.PARQUET_METADATA_KEY.encode()
#: The embed output's layout and row format, in every manifest entry and data file footer: 2 since
#: the data lies under ``embeddings/`` with the lineage columns (1: the earlier layout,
#: ``seqae.infer.migrate``).
OUTPUT_FORMAT = 2


def with_metadata(schema: pa.Schema, metadata: dict[str, Any]) -> pa.Schema:
    """``schema`` carrying ``metadata`` as JSON under the single key ``seqae``."""
    return schema.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str).encode()})


def read_metadata(path: str | os.PathLike | Location) -> dict[str, Any]:
    """The ``seqae`` metadata of a Parquet file written by seqae (footer key-value metadata)."""
    location = Location.of(path)
    with location.filesystem.open_input_file(location.path) as handle:
        raw = pq.read_metadata(handle).metadata or {}
    return json.loads(raw[METADATA_KEY]) if METADATA_KEY in raw else {}


def column_options(schema: pa.Schema) -> dict[str, list[str]]:
    """Parquet encodings per column: dictionaries only for flat columns that are not floating point,
    statistics only for flat columns.

    Model outputs are continuous floats: a dictionary never pays for them (pyarrow tries one per
    column chunk, then falls back to plain after filling it) and their min/max per embedding element
    serves no query: without either, outputs are written faster and smaller (figures in the docs'
    benchmarks page, from ``benchmarks/write_outputs.py``).
    Keys, passthrough and the scalar outputs keep statistics (``score > 0.99`` can skip row groups);
    nested columns, which pyarrow addresses by leaf path, get neither.
    """
    flat = [f for f in schema if not pa.types.is_nested(f.type)]
    return {"use_dictionary": [f.name for f in flat if not pa.types.is_floating(f.type)],
            "write_statistics": [f.name for f in flat]}


class StagedFile(AtomicFile):
    """An ``AtomicFile`` whose temporary name lies in ``staging`` rather than beside the target, so
    that a folder of data files never holds anything else, not even while a file is written or after
    a writer was killed (Polars refuses a folder holding ``.x.parquet.1a2b3c4d.tmp``). ``staging``
    must be on the target's filesystem (one rename moves the file into place)."""

    def __init__(self, target: str | os.PathLike | Location, staging: Location | None = None):
        super().__init__(target)
        if staging is not None and self.location != self.target:
            staging.mkdir()
            self.location = staging.join(self.target.temporary().name)


class AtomicParquetWriter:
    """One ``pq.ParquetWriter`` with an explicit schema, on any ``pyarrow.fs`` filesystem, whose file
    appears whole or not at all (``seqae.storage.AtomicFile``: a temporary name and a rename where
    rename is atomic; elsewhere the manifest written after ``commit()`` is what makes it count).

    ``commit()`` closes the file and moves it into place; ``abort()`` (or leaving the ``with`` block
    on an exception) removes it. With ``staging``, the temporary file is written there (``StagedFile``).
    """

    def __init__(self, path: str | os.PathLike | Location, schema: pa.Schema, *, row_group_size: int = 65536,
                 compression: str = "zstd", staging: Location | None = None):
        self.file = StagedFile(path, staging)
        self.path = self.file.target
        self.schema = schema
        self.row_group_size = row_group_size
        self.rows = 0
        where = self.file.location
        self._writer = pq.ParquetWriter(where.path, schema, filesystem=where.filesystem, compression=compression,
                                        **column_options(schema))

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema) if table.schema != self.schema else table,
                                     row_group_size=self.row_group_size)
            self.rows += table.num_rows

    def commit(self, metadata: dict[str, Any] | None = None) -> Location:
        """Close and move into place; ``metadata`` (known only at the end, such as row counts) goes
        into the footer under the key ``seqae``."""
        if metadata is not None:
            self._writer.add_key_value_metadata({names.PARQUET_METADATA_KEY: json.dumps(metadata, sort_keys=True,
                                                                                          default=str)})
        self._writer.close()
        return self.file.commit()

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.file.abort()

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def output_names_for(shards: list[Shard], root: str | None = None) -> dict[str, str]:
    """Output file name per shard URI: its path below ``root`` (the input location's folder, see
    ``seqae.data.source.data_root``; default: the shards' common folder) with ``/`` -> ``__`` and the
    suffix replaced by ``.parquet`` (``d=1/part-0.parquet`` -> ``d=1__part-0.parquet``).

    Names never collide, after every transformation: where two shards would get one name
    (``x.parquet`` beside ``x.pq``, ``a/b.parquet`` beside ``a__b.parquet``), each of them gets a short
    hash of its path, lengthened while the hashed name is any other shard's name (a real file may be
    called ``x-<hash>.parquet``). The result depends on the set of shards only, never on their order.
    """
    if root is not None:
        rels = {s.uri: posixpath.relpath(s.path, root) for s in shards}
    elif len(shards) == 1:
        rels = {shards[0].uri: posixpath.basename(shards[0].path)}
    else:
        base = posixpath.commonpath([posixpath.dirname(s.path) for s in shards])
        rels = {s.uri: posixpath.relpath(s.path, base) for s in shards}
    plain = {uri: rel.rsplit(".", 1)[0].replace("/", "__") + names.OUTPUT_SUFFIX for uri, rel in rels.items()}
    counts = Counter(plain.values())
    out = {uri: name for uri, name in plain.items() if counts[name] == 1}
    taken = set(plain.values())  # every name before hashing: a hashed name must be none of them
    for uri in sorted((u for u in plain if counts[plain[u]] > 1), key=lambda u: rels[u]):
        out[uri] = _hashed_name(plain[uri], rels[uri], taken)
        taken.add(out[uri])
    return out


def _hashed_name(name: str, rel: str, taken: set[str]) -> str:
    """``<stem>-<hash of rel>.parquet`` with the shortest hash (8 hex or more) that is not ``taken``."""
    stem, digest = name[: -len(names.OUTPUT_SUFFIX)], sha256_text(rel)
    for width in range(8, len(digest) + 1, 4):
        candidate = f"{stem}-{digest[:width]}{names.OUTPUT_SUFFIX}"
        if candidate not in taken:
            return candidate
    return f"{stem}-{digest}-{len(taken)}{names.OUTPUT_SUFFIX}"  # unreachable short of a sha256 collision


def rejects_path(out_dir: str | os.PathLike | Location, shard_name: str, *,
                 under: str = names.VALIDATE_REJECTS_DIR) -> Location:
    """``out_dir/<under>/<stem>.rejects.parquet`` for a shard or output file named ``shard_name``
    (``under``: ``_rejects`` for ``seqae validate --rejects-dir``, ``rejects`` in an embed output folder)."""
    stem = os.path.basename(shard_name).rsplit(".", 1)[0]
    return Location.of(out_dir).join(under, f"{stem}{names.REJECTS_SUFFIX}")


def write_rejects(out_dir: str | os.PathLike | Location, shard_name: str, rejects: list[pa.Table],
                  metadata: dict[str, Any] | None = None, *, under: str = names.VALIDATE_REJECTS_DIR,
                  staging: Location | None = None) -> Location | None:
    """Write a shard's rejected rows to ``out_dir/<under>/<shard>.rejects.parquet`` (none: no file,
    and a stale one from an earlier run is removed)."""
    tables = [t for t in rejects if t.num_rows]
    path = rejects_path(out_dir, shard_name, under=under)
    if not tables:
        path.delete()
        return None
    with AtomicParquetWriter(path, REJECT_SCHEMA, staging=staging) as writer:
        for table in tables:
            writer.write(table)
        return writer.commit(metadata or {})


# --- embeddings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lineage:
    """The model behind a row: ``model_id`` and ``model_version`` as its ``seqae.json`` says."""

    model_id: str
    model_version: int

    def columns(self, num_rows: int) -> list[pa.Array]:
        """The two lineage columns for ``num_rows`` rows (a repeated scalar: no Python per row)."""
        values = ColumnValues({}, num_rows, self)
        return [column.values(values, column.field(0)) for column in _LINEAGE]


@dataclass(frozen=True)
class ColumnValues:
    """What the output columns of one batch are made of: arrays by name, in row order (the scorer's
    outputs by ONNX output name, ``length``, ``score`` and ``is_anomaly``; for per-timestamp rows
    ``step_error_mean``, ...), and the lineage."""

    arrays: Mapping[str, Any]
    num_rows: int
    lineage: Lineage | None = None

    def __getitem__(self, name: str) -> Any:
        return self.arrays[name]


#: When an output column is present (``OutputColumn.when``): ``model`` where the model's mode writes
#: it (``seqae.config.ModeSpec.columns``), ``always``, ``scored`` with a fitted threshold, ``lineage``
#: in what ``seqae embed`` writes, ``neighbours`` where the model has a bank of training windows
#: (``neighbours.onnx``: the long layout, ``seqae.baseline``). Any other value names the boolean ``EmbedConfig`` option that asks
#: for the column (``step_errors``); the run's identity records it (``output_options``).
MODEL, ALWAYS, SCORED, LINEAGE, NEIGHBOURS = "model", "always", "scored", "lineage", "neighbours"
_CONDITIONS = (MODEL, ALWAYS, SCORED, LINEAGE, NEIGHBOURS)


def _plain(values: ColumnValues, field: pa.Field) -> pa.Array:
    """A flat column: the array of the column's name, in the column's type."""
    return pa.array(np.asarray(values[field.name], dtype=field.type.to_pandas_dtype()), field.type)


@dataclass(frozen=True)
class OutputColumn:
    """One column seqae writes after the key and passthrough columns of its input.

    Attributes:
        name: the column's name.
        type: its Arrow type, or a function of the embedding width that gives it.
        when: when it is present (``MODEL``, ``ALWAYS``, ``SCORED``, ``LINEAGE`` or an ``EmbedConfig`` option).
        values: makes the column of one batch from its ``ColumnValues`` (numpy in, no Python per row);
            by default the array of the column's name in the column's type.
        needs: the scorer output (ONNX) the column is made from: the session is asked for it.
    """

    name: str
    type: pa.DataType | Callable[[int], pa.DataType]
    when: str
    values: Callable[[ColumnValues, pa.Field], pa.Array] = _plain
    needs: str | None = None

    def field(self, embedding_dim: int) -> pa.Field:
        typ = self.type(embedding_dim) if callable(self.type) else self.type
        return pa.field(self.name, typ, nullable=False)


def _embedding_type(embedding_dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), embedding_dim)


def _embedding(values: ColumnValues, field: pa.Field) -> pa.Array:
    embedding = np.ascontiguousarray(values[field.name], dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(embedding.reshape(-1)), embedding.shape[1])


def _valid_steps(values: ColumnValues, field: pa.Field) -> pa.Array:
    """A ``(batch, time)`` output cut to each row's length: one list per row."""
    step, lengths = values[field.name], values[names.LENGTH]
    valid = np.arange(step.shape[1])[None, :] < np.asarray(lengths)[:, None]
    offsets = np.zeros(values.num_rows + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(step[valid].astype(np.float32)))


def _lineage(attribute: str, convert: Callable[[Any], Any], values: ColumnValues, field: pa.Field) -> pa.Array:
    """A lineage column: one value repeated (no Python per row)."""
    if values.lineage is None:
        raise ValueError("lineage: the schema has the lineage columns; expected a Lineage, got None")
    return pa.repeat(pa.scalar(convert(getattr(values.lineage, attribute)), field.type), values.num_rows)


#: The lineage columns, last in every row of ``seqae embed``: which model wrote it. Plain ``string``
#: and ``int32`` in the schema (one type in every engine: no categorical to unify across files);
#: Parquet stores them dictionary-encoded, one value per column chunk, so they cost next to nothing.
_LINEAGE = (OutputColumn(names.MODEL_ID, pa.string(), LINEAGE, functools.partial(_lineage, "model_id", str)),
            OutputColumn(names.MODEL_VERSION, pa.int32(), LINEAGE, functools.partial(_lineage, "model_version", int)))
LINEAGE_FIELDS = tuple(column.field(0) for column in _LINEAGE)
#: With a fitted threshold: the calibrated score in [0, 1] and the flag, which the write stage makes
#: from ``recon_error`` (per-timestamp rows: from ``window_error_min``, against the step threshold).
_SCORED = (OutputColumn(names.SCORE, pa.float32(), SCORED),
           OutputColumn(names.IS_ANOMALY, pa.bool_(), SCORED))

#: The columns of ``seqae embed``'s output after the key and passthrough columns, in this order.
OUTPUT_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn(names.EMBEDDING, _embedding_type, MODEL, _embedding, needs=names.EMBEDDING),
    OutputColumn(names.RECON_ERROR, pa.float32(), MODEL, needs=names.RECON_ERROR),
    OutputColumn(names.PRED_ERROR, pa.float32(), MODEL, needs=names.PRED_ERROR),
    OutputColumn(names.NEAREST_DISTANCE, pa.float32(), NEIGHBOURS, needs=names.NEAREST_DISTANCE),
    OutputColumn(names.LENGTH, pa.int32(), ALWAYS),
    *_SCORED,
    OutputColumn(names.STEP_ERROR, pa.list_(pa.float32()), "step_errors", _valid_steps, needs=names.STEP_ERROR),
    *_LINEAGE,
)

#: The columns of the per-timestamp output (``seqae embed --step-scores``) after the series key and
#: time: over the windows covering the step, the mean and max step error, how many windows, the
#: mean and the least of their window errors, and with a bank of training windows (``neighbours.onnx``)
#: the least of their nearest-window distances (``seqae.infer.steps``; the step threshold names which
#: one the step's score is).
STEP_SCORE_COLUMNS: tuple[OutputColumn, ...] = (
    OutputColumn(names.STEP_ERROR_MEAN, pa.float32(), ALWAYS, needs=names.STEP_ERROR),
    OutputColumn(names.STEP_ERROR_MAX, pa.float32(), ALWAYS, needs=names.STEP_ERROR),
    OutputColumn(names.WINDOWS, pa.int32(), ALWAYS),
    OutputColumn(names.WINDOW_ERROR_MEAN, pa.float32(), ALWAYS, needs=names.RECON_ERROR),
    OutputColumn(names.WINDOW_ERROR_MIN, pa.float32(), ALWAYS, needs=names.RECON_ERROR),
    OutputColumn(names.WINDOW_DISTANCE_MIN, pa.float32(), NEIGHBOURS, needs=names.NEAREST_DISTANCE),
    *_SCORED,
    *_LINEAGE,
)


def select_columns(model: Collection[str] = (), *, options: Collection[str] = (), scored: bool = False,
                   lineage: bool = False, steps: bool = False, neighbours: bool = False) -> tuple[OutputColumn, ...]:
    """The output columns present, in order: of ``OUTPUT_COLUMNS``, or with ``steps`` of ``STEP_SCORE_COLUMNS``.

    Args:
        model: the columns the model's mode writes (``ModeSpec.columns``).
        options: the ``EmbedConfig`` options switched on (``output_options``).
        scored: a threshold is fitted.
        lineage: the lineage columns (what ``seqae embed`` writes).
        neighbours: the model has a bank of training windows (``neighbours.onnx``, long layout).
    """
    on = {ALWAYS, *options, *((SCORED,) if scored else ()), *((LINEAGE,) if lineage else ()),
          *((NEIGHBOURS,) if neighbours else ())}
    table = STEP_SCORE_COLUMNS if steps else OUTPUT_COLUMNS
    return tuple(c for c in table if (c.name in model if c.when == MODEL else c.when in on))


def output_options(config: Any) -> tuple[str, ...]:
    """The options of ``config`` (an ``EmbedConfig``) that are on and ask for an optional column."""
    asked = (c.when for c in (*OUTPUT_COLUMNS, *STEP_SCORE_COLUMNS) if c.when not in _CONDITIONS)
    return tuple(option for option in dict.fromkeys(asked) if getattr(config, option))


def scorer_outputs(columns: Iterable[OutputColumn]) -> list[str]:
    """The scorer outputs ``columns`` are made from, each once, in column order."""
    return list(dict.fromkeys(c.needs for c in columns if c.needs is not None))


def with_lineage(table: pa.Table, lineage: Lineage) -> pa.Table:
    """``table`` with the lineage columns appended (a data file of the earlier layout, migrated)."""
    for field, column in zip(LINEAGE_FIELDS, lineage.columns(table.num_rows)):
        table = table.append_column(field, column)
    return table


def _check_input_names(inputs: Iterable[pa.Field], columns: Iterable[OutputColumn]) -> None:
    lineage = {c.name for c in columns if c.when == LINEAGE}
    taken = [f.name for f in inputs if f.name in lineage]
    if taken:
        raise ConfigError(f"key or passthrough column {taken[0]!r}: the outputs carry their own {taken[0]} "
                          f"(the model that wrote each row); expected no input column of that name, rename it")


def output_schema(keys: pa.Schema, passthrough: pa.Schema, embedding_dim: int,
                  columns: Sequence[OutputColumn]) -> pa.Schema:
    """The output schema of ``seqae embed``, the same for every shard of a run: the key and passthrough
    columns in their input types (``output_field``: nullable, without metadata, plain strings), so
    that it depends on the contract, never on what wrote a file; then ``columns`` (``select_columns``
    of ``OUTPUT_COLUMNS``).

    Raises:
        ConfigError: a key or passthrough column has the name of a lineage column in ``columns``.
    """
    _check_input_names([*keys, *passthrough], columns)
    return pa.schema([output_field(f) for f in (*keys, *passthrough)] + [c.field(embedding_dim) for c in columns])


def embedding_schema(keys: pa.Schema, passthrough: pa.Schema, embedding_dim: int, *, predicts: bool,
                     step_errors: bool, scored: bool = False, lineage: bool = False) -> pa.Schema:
    """``output_schema`` of a model that writes ``pred_error`` (``predicts``) or not: ``embedding``
    (``fixed_size_list<float32>[embedding_dim]``), ``recon_error`` float32, ``pred_error`` float32,
    ``length`` int32, with a fitted threshold ``score`` float32 (calibrated, in [0, 1]) and
    ``is_anomaly`` bool, when asked ``step_error`` ``list<float32>`` (one error per valid step), and
    with ``lineage`` ``model_id`` string and ``model_version`` int32.

    Raises:
        ConfigError: with ``lineage``, a key or passthrough column is called ``model_id`` or ``model_version``.
    """
    mode = MODES["predict" if predicts else "reconstruct"]
    columns = select_columns(mode.columns, options=("step_errors",) if step_errors else (),
                             scored=scored, lineage=lineage)
    return output_schema(keys, passthrough, embedding_dim, columns)


#: Input types written in their plain form, so that a file from Polars (large strings) and one from
#: pyarrow (strings) give outputs of one schema.
_PLAIN_TYPES = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}
if hasattr(pa, "string_view"):
    _PLAIN_TYPES |= {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}


def output_field(field: pa.Field) -> pa.Field:
    """A key or passthrough column as outputs carry it, whatever wrote the input: nullable, no field
    metadata (pandas, Polars and pyarrow differ in both), plain string and binary types."""
    typ = _PLAIN_TYPES.get(field.type, field.type)
    if pa.types.is_large_list(typ):
        typ = pa.list_(typ.value_field)
    return pa.field(field.name, typ, nullable=True)


def _table(schema: pa.Schema, inputs: list, values: ColumnValues, columns: Sequence[OutputColumn]) -> pa.Table:
    """``inputs`` (the input columns, in ``schema``'s types) then each column of ``schema`` after them,
    made by its entry in ``columns``."""
    by_name = {c.name: c for c in columns}
    made = [by_name[f.name].values(values, f) for f in list(schema)[len(inputs):]]
    return pa.Table.from_arrays(inputs + made, schema=schema)


def embedding_table(schema: pa.Schema, keys: pa.Table, passthrough: pa.Table, outputs: dict,
                    lengths, lineage: Lineage | None = None) -> pa.Table:
    """Assemble one output batch in ``schema`` (``output_schema``); ``outputs`` holds numpy arrays in
    row order (no Python per row) by scorer output name, and ``score``/``is_anomaly`` where scored;
    ``lineage`` fills the lineage columns where ``schema`` has them."""
    inputs = [keys.column(i) for i in range(keys.num_columns)]
    inputs += [passthrough.column(i) for i in range(passthrough.num_columns)]
    inputs = [c if c.type == schema.field(i).type else c.cast(schema.field(i).type) for i, c in enumerate(inputs)]
    values = ColumnValues({**outputs, names.LENGTH: lengths}, len(lengths), lineage)
    return _table(schema, inputs, values, OUTPUT_COLUMNS)


def step_scores_schema(key: pa.Field, time: pa.Field, scored: bool = False, *, lineage: bool = False,
                       neighbours: bool = False) -> pa.Schema:
    """The per-timestamp output of ``seqae embed --step-scores`` (long layout): the series key and time
    in their input types, then ``STEP_SCORE_COLUMNS``: ``step_error_mean`` and ``step_error_max``
    float32 over the windows covering the step, ``windows`` int32 (how many), ``window_error_mean`` and
    ``window_error_min`` float32 (the mean and the least ``recon_error`` of those windows), with
    ``neighbours`` ``window_distance_min`` float32 (the least ``nearest_distance`` of those windows),
    and with a fitted threshold ``score`` float32 and ``is_anomaly`` bool of the statistic the step
    threshold names (``window_distance_min`` where the model has a bank, else ``window_error_min``;
    ``window_error_mean`` if fitted before 2026-12-04) against it (fitted on held-out step scores,
    ``seqae.thresholds``), and with ``lineage`` (what ``seqae embed`` writes) ``model_id`` and
    ``model_version``."""
    columns = select_columns(scored=scored, lineage=lineage, steps=True, neighbours=neighbours)
    _check_input_names([key, time], columns)
    return pa.schema([pa.field(key.name, key.type, nullable=False), pa.field(time.name, time.type, nullable=False)]
                     + [c.field(0) for c in columns])


def step_scores_table(schema: pa.Schema, keys: pa.Array, times, mean, maximum, windows,
                      score=None, is_anomaly=None, lineage: Lineage | None = None, **arrays: Any) -> pa.Table:
    """One batch of per-timestamp rows (numpy arrays in row order) in ``schema``; ``arrays``: those of
    further ``STEP_SCORE_COLUMNS``, by column name."""
    inputs = [keys.cast(schema.field(0).type), pa.array(times).cast(schema.field(1).type)]
    values = ColumnValues({names.STEP_ERROR_MEAN: mean, names.STEP_ERROR_MAX: maximum, names.WINDOWS: windows,
                           names.SCORE: score, names.IS_ANOMALY: is_anomaly, **arrays}, len(inputs[0]), lineage)
    return _table(schema, inputs, values, STEP_SCORE_COLUMNS)


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
