"""The embed job's stages, each passing a small dataclass to the next:

    ShardInput (read + validate) --ReadBatch--> score() --Scores--> ShardOutput.write --> ShardOutput.commit
                                                                                      --> ShardResult

``seqae.infer.job`` runs them for one shard inline (``embed_shard``) or for many shards on worker
threads sharing one scoring thread (``embed``); the stages are the same either way.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from seqae import names
from seqae._version import __version__
from seqae.data import SequenceBatch, Shard, ShardReader, ShardStats
from seqae.errors import SeqaeError
from seqae.infer.commit import OutputFolder, ShardResult
from seqae.infer.model import InferenceModel
from seqae.infer.session import Scorer
from seqae.infer.steps import StepRows, StepScores
from seqae.io import (
    OUTPUT_FORMAT,
    AtomicParquetWriter,
    Lineage,
    embedding_table,
    row_group_rows,
    step_scores_table,
    write_rejects,
)
from seqae.storage import utc_now
from seqae.thresholds import step_score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadBatch:
    """Accepted sequences of one record batch and the rows rejected from it."""

    batch: SequenceBatch
    rejects: pa.Table

    @property
    def rows(self) -> int:
        """Output rows plus rejected rows: what this batch adds to the progress count."""
        return len(self.batch) + self.rejects.num_rows


@dataclass(frozen=True)
class Scores:
    """The scorer's outputs for one ``ReadBatch``, in its row order: name -> ``(batch, ...)`` array."""

    outputs: dict[str, np.ndarray]


class ShardInput:
    """Read stage: one shard opened against the model's data contract (the schema is checked here,
    before any row is read). Iterating yields ``ReadBatch``; ``stats`` is complete afterwards."""

    def __init__(self, shard: Shard, model: InferenceModel, read_batch_size: int):
        self.shard = shard
        self.reader = ShardReader(shard, model.data, batch_size=read_batch_size, num_features=model.num_features)
        schema, data = self.reader.schema, model.data
        if data.layout == "long":  # keys are (series, window_start, window_end)
            time_type = schema.field(data.time_column).type
            keys = pa.schema([schema.field(data.key_column), pa.field(names.WINDOW_START, time_type),
                              pa.field(names.WINDOW_END, time_type)])
        else:  # key and passthrough columns keep their input types
            keys = pa.schema([schema.field(c) for c in data.key_columns])
        passthrough = pa.schema([schema.field(c) for c in self.reader.passthrough_columns])
        self.output_schema = model.output_schema(keys, passthrough)
        self.steps_schema = model.step_scores_schema(schema) if model.step_scores else None

    @property
    def stats(self) -> ShardStats:
        return self.reader.stats

    def __iter__(self) -> Iterator[ReadBatch]:
        for batch, rejects in self.reader:
            yield ReadBatch(batch, rejects)


def score(scorer: Scorer, read: ReadBatch, batch_size: int) -> Scores:
    """Score a read batch in inference batches of rows of similar length.

    Rows are sorted by length and each inference batch is trimmed to its own longest row, so padding
    costs little on either provider. Results come back in the read batch's row order.
    """
    values, lengths = read.batch.values, read.batch.lengths
    n = len(lengths)
    if n == 0:
        return Scores({})
    uniform = bool((lengths == lengths[0]).all())
    if uniform and n <= batch_size:  # one call, rows in order: its arrays are the results (no copy)
        return Scores({name: np.asarray(array, dtype=np.float32) for name, array in scorer.run(values, lengths).items()})
    order = None if uniform else np.argsort(lengths, kind="stable")
    results: dict[str, np.ndarray] = {}
    for start in range(0, n, batch_size):
        if order is None:  # equal lengths (the common case for fixed-length data): slices, no gather
            idx: slice | np.ndarray = slice(start, start + batch_size)
            lens, chunk = lengths[idx], values[idx]
        else:
            idx = order[start:start + batch_size]
            lens = lengths[idx]
            chunk = values[idx, : int(lens.max())]
        for name, array in scorer.run(chunk, lens).items():
            if name not in results:
                shape = (n, values.shape[1]) if name == names.STEP_ERROR else (n, *array.shape[1:])
                results[name] = np.zeros(shape, dtype=np.float32)
            if name == names.STEP_ERROR:
                results[name][idx, : array.shape[1]] = array
            else:
                results[name][idx] = array
    return Scores(results)


class ShardOutput:
    """Write and commit stages for one shard: the data file is opened on the first batch and written
    under a temporary name; ``commit`` follows the protocol of ``seqae.infer.commit``."""

    def __init__(self, folder: OutputFolder, name: str, shard: Shard, schema: pa.Schema, model: InferenceModel,
                 steps_schema: pa.Schema | None = None):
        self.folder = folder
        self.name = name
        self.shard = shard
        self.schema = schema
        self.model = model
        self.rejects: list[pa.Table] = []
        self.lineage = Lineage(model.identity.model_id, model.identity.model_version)
        self.rows_written = 0
        self.started = time.perf_counter()
        self._writer: AtomicParquetWriter | None = None
        # Per-timestamp scores (long layout): folded per step as windows pass, written beside the data.
        self.steps_schema = steps_schema
        self._steps = (StepScores(steps_schema.field(0).type, distances=model.neighbours)
                       if steps_schema is not None else None)
        self._steps_writer: AtomicParquetWriter | None = None
        self.steps_written = 0
        # Names this attempt in the data file's footer and in its entry: a commit checks that the
        # file in place is its own (another writer of the same shard is a conflict, not a merge).
        self.attempt = uuid.uuid4().hex
        # A recompute (another model, threshold or max_length; --overwrite) first withdraws the
        # shard's earlier commit, entry first, then its files: after a kill no file of an older
        # attempt (a stale rejects file) is ever counted under a newer entry, nor a newer file
        # under an older entry.
        folder.withdraw(name)

    def _writer_for(self, location, schema: pa.Schema) -> AtomicParquetWriter:
        self.folder.check_writer()
        return AtomicParquetWriter(location, schema, row_group_size=row_group_rows(schema),
                                   staging=self.folder.staging)

    def _open(self) -> AtomicParquetWriter:
        if self._writer is None:
            self._writer = self._writer_for(self.folder.data_file(self.name), self.schema)
        return self._writer

    def _write_steps(self, rows: StepRows) -> None:
        if self._steps_writer is None:
            self._steps_writer = self._writer_for(self.folder.steps_file(self.name), self.steps_schema)
        if not len(rows):
            return
        # The step threshold, fitted on held-out step scores of the statistic it names; a threshold.json
        # written before there was one has the window threshold only (applied to the step score, which is
        # in its units; its rate is not per step).
        threshold = self.model.threshold
        steps = (threshold.steps_ or threshold) if threshold is not None else None
        columns = rows.columns()
        _, values = step_score(threshold, columns, rows.windows)
        scored = {"score": steps.score(values), "is_anomaly": steps.predict(values)} if steps is not None else {}
        scored.update(columns)
        self._steps_writer.write(step_scores_table(self.steps_schema, rows.keys, rows.times, rows.mean, rows.max,
                                                   rows.windows, **scored, lineage=self.lineage))
        self.steps_written += len(rows)

    def write(self, read: ReadBatch, scores: Scores) -> None:
        self.rejects.append(read.rejects)
        if len(read.batch):
            outputs = scores.outputs
            threshold = self.model.threshold
            if threshold is not None:  # here, on the worker threads, not on the scoring thread
                errors = outputs[names.RECON_ERROR]
                outputs = {**outputs, names.SCORE: threshold.score(errors), names.IS_ANOMALY: threshold.predict(errors)}
            table = embedding_table(self.schema, read.batch.keys, read.batch.passthrough, outputs,
                                    read.batch.lengths, self.lineage)
            self._open().write(table)
            self.rows_written += table.num_rows
            if self._steps is not None:
                self._write_steps(self._steps.add(read.batch, outputs[names.STEP_ERROR], outputs[names.RECON_ERROR],
                                                  outputs.get(names.NEAREST_DISTANCE)))

    def commit(self, stats: ShardStats) -> ShardResult:
        """Rejects, then the data file, then the manifest entry (the commit). Counts are checked
        against the reader's own first: what the reader accepted must all have been written."""
        layout = self.model.data.layout
        rejected = stats.rows_rejected + stats.windows_rejected
        if self.rows_written != stats.sequences_out:
            raise SeqaeError(f"{self.shard.uri}: the reader accepted {stats.sequences_out} rows but "
                             f"{self.rows_written} were written")
        # Long layout: an output row is a window; what came in is the windows formed + step rows rejected.
        rows_in = stats.windows_formed + stats.rows_rejected if layout == "long" else stats.rows_in
        if rows_in != self.rows_written + rejected:
            raise SeqaeError(f"{self.shard.uri}: rows in {rows_in} != written {self.rows_written} + "
                             f"rejected {rejected}")
        record = {**self.model.identity.to_dict(), "output_format": OUTPUT_FORMAT, "seqae_version": __version__,
                  "provider": self.model.scorer.provider, "source": self.shard.uri,
                  "fingerprint": self.shard.fingerprint, "rows_in": rows_in, "rows_written": self.rows_written,
                  "rows_rejected": rejected, "stats": stats.to_dict(), "attempt": self.attempt,
                  "created_at": utc_now()}
        if self._steps is not None:
            self._write_steps(self._steps.finish())
            record["steps_written"] = self.steps_written
            # Input steps with no row: in no accepted window (a rejected window's steps, stride gaps,
            # a dropped tail); of those, ``steps_uncovered`` are in no window at all.
            record["steps_unscored"] = stats.steps_windowed - self.steps_written
            record["steps_uncovered"] = stats.steps_uncovered
        write_rejects(self.folder.location, self.name, self.rejects, {**record, "output": self.name},
                      under=names.REJECTS_DIR, staging=self.folder.staging)
        if self._steps_writer is not None:
            self._steps_writer.commit(record)
            self._steps_writer = None
        self._open().commit(record)
        self._writer = None
        seconds = round(time.perf_counter() - self.started, 3)
        self.folder.commit(self.name, {**record, "seconds": seconds})
        log.info("%s -> %s: %d rows in, %d written, %d rejected (%.0f rows/s)", self.shard.uri, self.name,
                 rows_in, self.rows_written, rejected, rows_in / max(seconds, 1e-9))
        return ShardResult(self.shard.uri, self.name, "done", rows_in, self.rows_written, rejected, seconds)

    def abort(self) -> None:
        for writer in (self._writer, self._steps_writer):
            if writer is not None:
                writer.abort()
        self._writer = self._steps_writer = None
