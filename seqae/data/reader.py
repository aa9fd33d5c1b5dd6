"""Stream validated, padded sequence batches out of Parquet shards; bad rows go to rejects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqae.data.arrays import decode_sequences, describe_values_type, is_number
from seqae.data.batch import SequenceBatch, ShardStats
from seqae.data.config import DataConfig
from seqae.data.filters import RowFilter
from seqae.data.rejects import REJECT_REASONS, empty_rejects, rejects_table
from seqae.data.source import Shard
from seqae.data.windows import iter_windows
from seqae.errors import ContractError, CorruptFileError, SeqaeError, is_transient, one_line

DEFAULT_READ_BATCH = 4096


#: I/O errors that say the file itself cannot be opened (not that the network or disk had a moment).
UNREADABLE = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def unreadable(shard: Shard, exc: BaseException, where: str = "opening the footer") -> BaseException:
    """What a failed read becomes. A connection error or a timeout (``errors.is_transient``) stays
    itself, so that an orchestrator retries it; a file that cannot be opened is a ``ContractError``;
    any other error of the Parquet decoder means the bytes are bad (``ArrowInvalid``, an ``OSError``
    such as ``Corrupt snappy compressed data``): a ``CorruptFileError`` naming the file, ``where``
    and what pyarrow said. Both are quarantined, never retried.

    Args:
        shard: the file being read.
        exc: what pyarrow (or the filesystem) raised.
        where: the read that failed, for the message: ``"opening the footer"``, ``"reading rows from row 96"``.
    """
    if isinstance(exc, SeqaeError) or is_transient(exc):
        return exc
    if isinstance(exc, UNREADABLE):
        return ContractError(shard.uri, "cannot be opened", found=f"{type(exc).__name__}: {one_line(exc)}")
    return CorruptFileError(shard.uri, exc, where=where)


def _raise_unreadable(shard: Shard, exc: Exception, where: str) -> NoReturn:
    raised = unreadable(shard, exc, where)
    if raised is exc:
        raise exc
    raise raised from exc


def _open(shard: Shard) -> pq.ParquetFile:
    handle = None
    try:
        handle = shard.open()
        # Pages written with a CRC are checked: a flipped bit in an uncompressed page is refused, not read.
        return pq.ParquetFile(handle, page_checksum_verification=True)
    except MemoryError:
        raise  # the worker is short of memory: not the file's fault
    except Exception as exc:  # pyarrow raises several types for unreadable files
        if handle is not None:
            handle.close()
        _raise_unreadable(shard, exc, "opening the footer")


def _type_name(t: pa.DataType) -> str:
    """``list<float>`` rather than Arrow's ``list<item: float>``: the words the contract uses."""
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{_type_name(t.value_type)}>[{t.list_size}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_type_name(t.value_type)}>"
    return str(t)


class ShardReader:
    """Reads one shard in record batches: validates, decodes, pads, filters and rejects.

    Iterating yields ``(SequenceBatch, rejects)`` pairs; ``stats`` is complete once iteration ends.
    File-level problems raise ``ContractError`` on construction (schema) or while reading (content);
    bytes that do not decode raise its subclass ``CorruptFileError`` wherever they are met (the footer,
    a page mid-file). A connection error or a timeout is raised as itself, to be retried.
    """

    def __init__(self, shard: Shard, config: DataConfig, *, batch_size: int = DEFAULT_READ_BATCH,
                 row_filter: RowFilter | None = None, num_features: int | None = None):
        self.shard = shard
        self.config = config
        self.batch_size = batch_size
        self.row_filter = row_filter
        self.stats = ShardStats(shard.uri)
        self._file = _open(shard)
        try:
            self.schema = self._file.schema_arrow
        except (MemoryError, SeqaeError):
            raise
        except Exception as exc:
            _raise_unreadable(shard, exc, "reading the schema")
        if config.layout == "long":
            self.num_features = self._check_long_schema()
        else:
            self.num_features = self._check_sequence_schema(num_features or config.num_features)
        self.passthrough_columns = self._passthrough_columns()
        if row_filter is not None:
            row_filter.check(self.schema, shard.uri)

    @property
    def num_rows(self) -> int:
        return self._file.metadata.num_rows

    # -- schema checks -----------------------------------------------------------------------
    def _require(self, column: str, expected: str) -> pa.Field:
        if column not in self.schema.names:
            raise ContractError(
                self.shard.uri, "column is missing", column=column, expected=expected,
                found=f"columns {', '.join(self.schema.names) or '(none)'}",
            )
        return self.schema.field(column)

    def _check_sequence_schema(self, requested: int | None) -> int:
        """Check the sequence layout's columns; the feature count: ``requested``, or read from the file."""
        cfg = self.config
        self._require(cfg.key_column, "a key column")
        vfield = self._require(cfg.values_column, "list<float32> or list<list<float32>>")
        described = describe_values_type(vfield.type)
        if described is None:
            raise ContractError(
                self.shard.uri, "wrong type", column=cfg.values_column,
                expected="list<float32> (one feature) or list<list<float32>> ([time][feature])",
                found=_type_name(vfield.type),
            )
        depth, fixed = described
        found_features = 1 if depth == 1 else fixed
        num_features = requested
        if num_features is None:
            if depth == 1:
                num_features = 1
            elif fixed is not None:
                num_features = fixed
            else:
                num_features = self._sniff_feature_count()
        if depth == 1 and num_features != 1:
            raise ContractError(
                self.shard.uri, "wrong feature count", column=cfg.values_column,
                expected=f"list<list<float32>> with {num_features} features per step",
                found=f"{_type_name(vfield.type)} (1 feature per step)",
            )
        if found_features is not None and found_features != num_features:
            raise ContractError(
                self.shard.uri, "wrong feature count", column=cfg.values_column,
                expected=f"{num_features} features per step", found=f"{found_features} ({_type_name(vfield.type)})",
            )
        self._depth = depth
        return num_features

    def _sniff_feature_count(self) -> int:
        col = None
        if self._file.num_row_groups:
            try:
                col = self._file.read_row_group(0, columns=[self.config.values_column]).column(0)
            except MemoryError:
                raise
            except Exception as exc:
                _raise_unreadable(self.shard, exc, "reading row group 0")
        if col is not None:
            for chunk in col.chunks:
                inner = pc.list_value_length(pc.list_flatten(chunk)).drop_null()
                if len(inner):
                    return int(pc.mode(inner)[0]["mode"].as_py())
        return 1

    def _check_long_schema(self) -> int:
        """Check the long layout's columns; the feature count (one per feature column)."""
        cfg = self.config
        feature_columns = cfg.long_layout().feature_columns
        self._require(cfg.key_column, "a series key column")
        tfield = self._require(cfg.time_column, "a time column (numbers or timestamps)")
        if not (is_number(tfield.type) or pa.types.is_temporal(tfield.type)):
            raise ContractError(self.shard.uri, "wrong type", column=cfg.time_column,
                                expected="integers, floats, dates or timestamps", found=_type_name(tfield.type))
        for name in feature_columns:
            f = self._require(name, "a numeric feature column")
            if not is_number(f.type):
                raise ContractError(self.shard.uri, "wrong type", column=name,
                                    expected="a numeric type (float32 preferred)", found=_type_name(f.type))
        return len(feature_columns)

    def _passthrough_columns(self) -> list[str]:
        cfg = self.config
        if cfg.layout == "long":
            return []
        reserved = {cfg.key_column, cfg.values_column}
        if cfg.passthrough is None:
            return [n for n in self.schema.names if n not in reserved]
        for name in cfg.passthrough:
            self._require(name, "a passthrough column named in the config")
        return [n for n in cfg.passthrough if n not in reserved]

    # -- reading -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[SequenceBatch, pa.Table]]:
        if self.config.layout == "long":
            yield from iter_windows(self.record_batches, self.schema, self.config, self.shard.uri, self.stats)
        else:
            yield from self._iter_sequences()
        self.stats.check(self.config.layout)

    def record_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The shard's rows in record batches of ``batch_size``; a decoding failure mid-file becomes
        ``unreadable``'s error, naming the first row that could not be read."""
        delivered = 0
        try:
            batches = self._file.iter_batches(batch_size=self.batch_size, columns=columns)
        except MemoryError:
            raise
        except Exception as exc:
            _raise_unreadable(self.shard, exc, "reading rows from row 0")
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except MemoryError:
                raise
            except Exception as exc:
                _raise_unreadable(self.shard, exc, f"reading rows from row {delivered}")
            delivered += batch.num_rows
            yield batch

    def _iter_sequences(self) -> Iterator[tuple[SequenceBatch, pa.Table]]:
        cfg = self.config
        extra = list(self.row_filter.columns) if self.row_filter else []
        columns = list(dict.fromkeys([cfg.key_column, cfg.values_column, *self.passthrough_columns, *extra]))
        row_base = 0
        for record_batch in self.record_batches(columns):
            n = record_batch.num_rows
            rows = np.arange(row_base, row_base + n, dtype=np.int64)
            row_base += n
            self.stats.rows_in += n
            table = pa.Table.from_batches([record_batch])
            keep = np.ones(n, dtype=bool)
            if self.row_filter is not None:
                keep = self.row_filter.mask(table)
                self.stats.rows_filtered += int((~keep).sum())
            decoded = decode_sequences(record_batch.column(cfg.values_column), self.num_features, cfg.max_abs_value,
                                       cfg.max_length)
            key_col = record_batch.column(cfg.key_column)
            null_key = key_col.is_null().to_numpy(zero_copy_only=False) if key_col.null_count else np.zeros(n, bool)
            lengths = decoded.lengths
            too_long = lengths > cfg.max_length if cfg.max_length else np.zeros(n, bool)
            # Too long first: such rows hold no steps in the padded array (see decode_sequences).
            checks = [
                ("null_key", cfg.key_column, null_key),
                ("null_sequence", cfg.values_column, decoded.null_row),
                ("too_long", cfg.values_column, too_long),
                ("null_value", cfg.values_column, decoded.null_value),
                ("feature_count", cfg.values_column, decoded.bad_feature_count),
                ("non_finite", cfg.values_column, decoded.non_finite),
                ("out_of_range", cfg.values_column, decoded.out_of_range),
                ("empty", cfg.values_column, lengths == 0),
                ("too_short", cfg.values_column, lengths < cfg.min_length),
            ]
            rejected = np.zeros(n, dtype=bool)
            reasons: list[str] = []
            details: list[str] = []
            columns_hit: list[str] = []
            reject_rows: list[int] = []
            for reason, column, flags in checks:
                hit = flags & keep & ~rejected
                if not hit.any():
                    continue
                for i in np.flatnonzero(hit):
                    reject_rows.append(int(i))
                    reasons.append(reason)
                    columns_hit.append(column)
                    details.append(self._detail(reason, int(lengths[i]), decoded, int(i)))
                rejected |= hit
            rejects = empty_rejects()
            if reject_rows:
                order = np.argsort(reject_rows, kind="stable")
                idx = np.asarray(reject_rows, dtype=np.int64)[order]
                rejects = rejects_table(
                    self.shard.uri, rows[idx], key_col.take(pa.array(idx)),
                    [columns_hit[j] for j in order], [reasons[j] for j in order], [details[j] for j in order],
                )
                self.stats.rows_rejected += len(idx)
                self.stats.count_reasons(reasons)
            accepted = keep & ~rejected
            self.stats.sequences_out += int(accepted.sum())
            if accepted.all():
                sel = None
                values, lens, out_rows = decoded.values, lengths, rows
            else:
                sel = np.flatnonzero(accepted)
                values, lens, out_rows = decoded.values[sel], lengths[sel], rows[sel]
            longest = int(lens.max()) if len(lens) else 0
            values = values[:, :longest]
            keys = table.select([cfg.key_column])
            passthrough = table.select(self.passthrough_columns)
            if sel is not None:
                keys, passthrough = keys.take(sel), passthrough.take(sel)
            yield SequenceBatch(self.shard.uri, keys, passthrough, values, lens.astype(np.int32, copy=False), out_rows), rejects

    def _detail(self, reason: str, length: int, decoded=None, row: int = 0) -> str:
        """What was expected and what was found, for one rejected row."""
        cfg = self.config
        if reason == "too_short":
            return f"expected at least {cfg.min_length} steps, found {length}"
        if reason == "too_long":
            return f"expected at most {cfg.max_length} steps, found {length}"
        if reason == "feature_count":
            found = decoded.found_features.get(row) if decoded is not None else None
            if found is not None:
                step, count = found
                return f"expected {self.num_features} features per step, found {count} at step {step}"
            return f"expected {self.num_features} features per step"
        if reason == "non_finite" and decoded is not None:
            steps = decoded.values[row, :length]
            bad = np.argwhere(~np.isfinite(steps))
            if len(bad):
                step, feature = (int(x) for x in bad[0])
                value = steps[step, feature]
                found = "NaN" if np.isnan(value) else "infinity" if value > 0 else "-infinity"
                where = f"step {step}" + (f", feature {feature}" if steps.shape[1] > 1 else "")
                return f"expected finite numbers, found {found} at {where}"
        if reason == "out_of_range" and decoded is not None:
            steps = decoded.values[row, :length]
            with np.errstate(invalid="ignore"):
                largest = float(np.nanmax(np.abs(steps))) if steps.size else float("nan")
            found = "a value beyond float32" if np.isinf(largest) else f"{largest:g}" if np.isfinite(largest) else "a larger one"
            return f"expected |value| <= {cfg.max_abs_value:g}, found {found}"
        return REJECT_REASONS[reason]


def iter_shard(shard: Shard, config: DataConfig, **kwargs) -> Iterator[tuple[SequenceBatch, pa.Table]]:
    """Yield ``(SequenceBatch, rejects)`` for one shard; see ``ShardReader``."""
    yield from ShardReader(shard, config, **kwargs)
