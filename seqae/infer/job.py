"""The batch embedding job: Parquet shards in, embeddings and reconstruction errors out.

    worker 1: read + validate shard a --ReadBatch--\\                          /--Scores--> write a --> commit a
    worker 2: read + validate shard b --ReadBatch---> scoring thread (one session) --Scores--> write b --> commit b
    ...

Each worker thread owns one shard at a time, end to end, so a shard's rows keep their order and
its commit stays in one place; pyarrow (decode, compression) and numpy release the GIL, so workers
decode and write in parallel while one thread keeps the scorer busy. A worker submits up to
``SCORE_AHEAD`` batches before it waits for the first, so reading overlaps scoring. ``embed_shard``
runs the same stages for one shard in the calling thread.

Imports neither TensorFlow nor Prefect.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from seqae import names
from seqae.config import DataConfig, EmbedConfig
from seqae.data import Shard, ShardReader, resolve_shards
from seqae.errors import ContractError, SeqaeError
from seqae.infer.commit import EmbedReport, OutputFolder, OutputPlan, ShardResult, plan_embed
from seqae.infer.model import InferenceModel
from seqae.infer.runtime import physical_cores
from seqae.infer.stages import ReadBatch, Scores, ShardInput, ShardOutput, score
from seqae.io import output_names_for
from seqae.lease import FolderBusyError
from seqae.storage import Location

log = logging.getLogger(__name__)

#: Batches a worker has submitted to the scorer before it waits for the oldest one.
SCORE_AHEAD = 2
#: Worker threads at most when ``EmbedConfig.workers`` is not set.
MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class Progress:
    """Reported while a job runs: ``rows`` more input rows handled, ``shards`` more shards finished."""

    rows: int = 0
    shards: int = 0


ProgressCallback = Callable[[Progress], None]
Submit = Callable[[ReadBatch], "Future[Scores]"]


class Cancelled(Exception):
    """A worker stopped because another one failed (never leaves the job)."""


class ScoringThread:
    """The one thread that calls the scorer. ``submit`` blocks while ``queue_size`` batches wait,
    which bounds memory; every wait also watches ``stop`` so that a failure elsewhere ends it."""

    def __init__(self, model: InferenceModel, queue_size: int, stop: threading.Event):
        self.model = model
        self.stop = stop
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._loop, name="seqae-score", daemon=True)
        self._thread.start()

    def submit(self, read: ReadBatch) -> Future[Scores]:
        future: Future[Scores] = Future()
        while True:
            if self.stop.is_set():
                raise Cancelled
            try:
                self._queue.put((read, future), timeout=0.1)
                return future
            except queue.Full:
                continue

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:  # close(): no wait for the poll to time out
                return
            read, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(score(self.model.scorer, read, self.model.batch_size))
            except BaseException as exc:  # handed to the worker that waits on it
                future.set_exception(exc)

    def close(self) -> None:
        self.stop.set()
        try:
            self._queue.put_nowait(None)  # wakes the loop at once (a full queue: it sees stop within 0.1 s)
        except queue.Full:
            pass
        self._thread.join(timeout=30)


def _score_inline(model: InferenceModel) -> Submit:
    def submit(read: ReadBatch) -> Future[Scores]:
        future: Future[Scores] = Future()
        future.set_result(score(model.scorer, read, model.batch_size))
        return future

    return submit


def _wait(future: Future[Scores], stop: threading.Event | None) -> Scores:
    while True:
        if stop is not None and stop.is_set() and not future.done():
            raise Cancelled
        try:
            return future.result(timeout=0.1)
        except TimeoutError:
            continue


def run_shard(model: InferenceModel, shard: Shard, folder: OutputFolder, name: str, config: EmbedConfig,
              submit: Submit, *, stop: threading.Event | None = None,
              on_progress: ProgressCallback | None = None) -> ShardResult:
    """Read, score, write and commit one shard; on any failure nothing of it is committed.

    The shard is checked against the model's contract only (``ShardInput``), never against other
    shards: its output schema comes from the contract (``seqae.io.output_field``)."""
    source = ShardInput(shard, model, config.read_batch_size)
    sink = ShardOutput(folder, name, shard, source.output_schema, model, source.steps_schema)
    pending: deque[tuple[ReadBatch, Future[Scores]]] = deque()

    def write_oldest() -> None:
        read, future = pending.popleft()
        sink.write(read, _wait(future, stop))
        if on_progress is not None:
            on_progress(Progress(rows=read.rows))

    try:
        for read in source:
            if stop is not None and stop.is_set():
                raise Cancelled
            pending.append((read, submit(read)))
            while len(pending) > SCORE_AHEAD:
                write_oldest()
        while pending:
            write_oldest()
        result = sink.commit(source.stats)
    except BaseException:
        for _, future in pending:
            future.cancel()
        sink.abort()
        raise
    if on_progress is not None:
        on_progress(Progress(shards=1))
    return result


def run_or_quarantine(model: InferenceModel, shard: Shard, folder: OutputFolder, name: str, config: EmbedConfig,
                      submit: Submit, **options) -> ShardResult:
    """``run_shard``, and a file that breaks the contract as a whole quarantined (``fail_fast``:
    raised): what ``embed`` workers and ``embed_shard`` both do with a shard."""
    try:
        return run_shard(model, shard, folder, name, config, submit, **options)
    except ContractError as exc:
        if config.fail_fast:
            raise
        return folder.quarantine(shard, name, exc)


def _as_shard(shard: Shard | str | os.PathLike) -> Shard:
    if isinstance(shard, Shard):
        return shard
    found = resolve_shards(os.fspath(shard))
    if len(found) != 1:
        raise SeqaeError(f"{shard}: expected one Parquet file, found {len(found)}")
    return found[0]


def embed_shard(model: InferenceModel | str | os.PathLike, shard: Shard | str | os.PathLike,
                out: str | os.PathLike | Location, config: EmbedConfig = EmbedConfig(), *,
                output_name: str | None = None) -> ShardResult:
    """Embed one shard end to end with the commit protocol of ``embed``; skip it when it is done.

    This is the unit that flows, Ray tasks and ``embed`` share. Open the model once with
    ``InferenceModel.open`` and pass it to every call to reuse the session across shards.

    Args:
        model: an ``InferenceModel`` or an exported model directory (opened with ``config``).
        shard: a ``Shard`` or the path/URI of one Parquet file.
        out: the output folder (a local path or any ``pyarrow.fs`` URI).
        config: run options (``read_batch_size``, ``overwrite``; the others when ``model`` is a path).
        output_name: the data file's name in ``out``; default: the shard's name with ``.parquet``.
            ``embed`` names files after their path below the input folder (``plan_outputs``).

    Returns:
        The shard's result, ``status`` ``"skipped"`` when an earlier run committed it for the same
        input fingerprint, model and ONNX file (an output of the earlier folder layout is moved
        first, ``OutputFolder.migrate_shard``).
    """
    if not isinstance(model, InferenceModel):
        model = InferenceModel.open(model, config)
    shard = _as_shard(shard)
    folder = OutputFolder(out)
    folder.create()
    name = output_name or output_names_for([shard])[shard.uri]
    with folder.lock(exclusive=False), folder.shard_lock(name):
        folder.migrate_shard(name)
        if not config.overwrite:
            done = folder.done(shard, name, model.identity)
            if done is not None:
                return done
        return run_or_quarantine(model, shard, folder, name, config, _score_inline(model))


def plan_outputs(data: str, out: str | os.PathLike | Location) -> list[tuple[Shard, str]]:
    """The shards at ``data`` with their output names in ``out`` (``plan_embed``, as pairs)."""
    return [(p.shard, p.output) for p in plan_embed(data, out).shards]


def prepare_embed(data: str, out: str | os.PathLike | Location, only: str | None = None) -> OutputPlan:
    """Plan a run and withdraw what the plan makes stale (renamed or deleted sources), for callers
    that then run ``embed_shard`` per planned shard (the flows, Ray): ``embed`` does the same.

    A folder of the earlier layout is moved first (``OutputFolder.migrate``) when its lock is free;
    while other shard tasks hold it, each ``embed_shard`` moves its own output instead."""
    plan = plan_embed(data, out, only)
    folder = OutputFolder(out)
    folder.create()
    if folder.legacy.present():
        try:
            with folder.lock(exclusive=True):
                folder.migrate()
        except FolderBusyError as exc:
            log.warning("%s: the earlier layout stays until the folder is free (%s); each shard task moves "
                        "its own output meanwhile", folder, exc)
    with folder.lock(exclusive=False):
        folder.withdraw_stale(plan)
    return plan


def _fp16_check(model: InferenceModel, shards: list[Shard], rows: int = 1024) -> dict[str, Any]:
    """fp16 against fp32 on the first rows of the first usable shard to do: the fp16 file's parity
    figure, taken where it can be (export runs where TensorFlow is, usually without a GPU)."""
    from seqae.infer.artifacts import ModelArtifacts
    from seqae.infer.runtime import fp16_parity
    from seqae.infer.session import model_source

    ModelArtifacts.open(model.location, (names.SCORER_ONNX,))
    batch = None
    for shard in shards:
        try:
            batch, _ = next(iter(ShardReader(shard, model.data, batch_size=rows, num_features=model.num_features)),
                            (None, None))
        except ContractError:  # its worker quarantines it
            continue
        if batch is not None and len(batch):
            break
    if batch is None or not len(batch):
        return {"measured": False, "reason": "no accepted row to compare on"}
    return fp16_parity(model_source(model.info.file(names.SCORER_FP16_ONNX)),
                       model_source(model.info.file(names.SCORER_ONNX)),
                       batch.values, batch.lengths, model.scorer.output_names)


def embed(model_dir: str | os.PathLike, data: str, out: str | os.PathLike | Location,
          config: EmbedConfig = EmbedConfig(), *, data_config: DataConfig | None = None,
          on_progress: ProgressCallback | None = None, null_scorer: bool = False) -> EmbedReport:
    """Score every shard at ``data`` with the model's scorer and write Parquet under ``out``.

    Args:
        model_dir: an exported model directory (checksums are verified).
        data: Parquet file, directory, glob or URI.
        out: output folder, a local path or any ``pyarrow.fs`` URI: ``embeddings/`` (one ``.parquet``
            per input shard, nothing else), ``rejects/``, ``steps/`` and ``_seqae/`` (commit records,
            quarantine records, run reports, the folder's state); see ``seqae.infer.commit``. A folder
            of the earlier layout is moved into this one first (``OutputFolder.migrate``).
        config: run options.
        data_config: the data contract; defaults to the one the model was trained with.
        on_progress: called from worker threads with a ``Progress`` after each batch and shard.
        null_scorer: score with zeros (measures the pipeline's capacity; not embeddings).

    Returns:
        Per-shard and total counts; the same goes to ``out/_seqae/runs/<time>.json``, and the
        folder's state (every committed shard, whichever run wrote it) to ``out/_seqae/state.json``.

    Raises:
        DeviceError: ``device="cuda"`` without a usable CUDA provider, or heavy nodes off the GPU.
        ContractError, CorruptFileError: with ``config.fail_fast`` only, the first input file that
            cannot be used as a whole (shards already finished stay); by default such a file is
            quarantined and counted in the report instead.
    """
    started = time.perf_counter()
    model = InferenceModel.open(model_dir, config, data_config=data_config, null_scorer=null_scorer)
    folder = OutputFolder(out)
    plan = plan_embed(data, folder.location)
    folder.create()
    with folder.lock(exclusive=True):
        report = _embed_planned(model, plan, folder, config, on_progress)
    report.seconds = time.perf_counter() - started
    return write_summary(report, folder, model.identity, data)


def _embed_planned(model: InferenceModel, plan: OutputPlan, folder: OutputFolder,
                   config: EmbedConfig, on_progress: ProgressCallback | None) -> EmbedReport:
    folder.migrate()
    folder.remove_leftovers()
    folder.withdraw_stale(plan)
    planned = [(p.shard, p.output) for p in plan.selected]
    report = EmbedReport(str(folder), model.scorer.provider, model.batch_size)
    todo = []
    for shard, name in planned:
        done = None if config.overwrite else folder.done(shard, name, model.identity)
        if done is None:
            todo.append((shard, name))
            continue
        report.shards.append(done)
        if on_progress is not None:
            on_progress(Progress(rows=done.rows_in, shards=1))
    if config.fp16 and todo:
        report.fp16_parity = _fp16_check(model, [shard for shard, _ in todo])
        log.info("fp16 against fp32 on CUDA: %s", report.fp16_parity)
    if todo:
        workers = min(config.workers or min(physical_cores(), MAX_DEFAULT_WORKERS), len(todo))
        log.info("%d shard(s) to embed, %d already done; %s, batch %d, %d worker(s)", len(todo),
                 len(planned) - len(todo), model.scorer.provider, model.batch_size, workers)
        report.shards.extend(_run_workers(model, todo, folder, config, workers, on_progress))
    return report


def write_summary(report: EmbedReport, out: OutputFolder | str | os.PathLike | Location, identity, data: str) -> EmbedReport:
    """Check that a run's counts reconcile, write its report to ``_seqae/runs/<time>.json`` and the
    folder's state (every committed shard and quarantined file, totals over the folder, the models
    that wrote it) to ``_seqae/state.json``; ``embed`` and the flows (which run ``embed_shard`` per
    task) both end with this.

    Raises:
        SeqaeError: rows in != rows written + rows rejected + rows quarantined over the run, or a
            committed entry of the folder that does not reconcile.
    """
    folder = out if isinstance(out, OutputFolder) else OutputFolder(out)
    report.shards.sort(key=lambda s: s.shard)
    totals = report.totals
    if totals["rows_in"] != totals["rows_written"] + totals["rows_rejected"] + totals.get("rows_quarantined", 0):
        raise SeqaeError(f"row counts do not reconcile: {totals}")
    run = folder.write_run({**report.to_dict(), **identity.to_dict(), "data": str(data)})
    folder.write_state(last_run=run)
    return report


def _run_workers(model: InferenceModel, todo: list[tuple[Shard, str]], folder: OutputFolder, config: EmbedConfig,
                 workers: int, on_progress: ProgressCallback | None) -> list[ShardResult]:
    """Shards in input order over ``workers`` threads and one scoring thread. The first failure
    stops the others (their current shard is not committed) and is raised; shards committed before
    it stay committed."""
    stop = threading.Event()
    scoring = ScoringThread(model, config.queue_size, stop)

    def one(shard: Shard, name: str) -> ShardResult | None:
        if stop.is_set():
            return None
        try:
            return run_or_quarantine(model, shard, folder, name, config, scoring.submit, stop=stop,
                                     on_progress=on_progress)
        except Cancelled:
            return None
        except BaseException:
            stop.set()
            raise

    results: list[ShardResult] = []
    errors: list[BaseException] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="seqae-shard")
    try:
        futures = [pool.submit(one, shard, name) for shard, name in todo]
        for future in futures:
            try:
                result = future.result()
            except Exception as exc:
                errors.append(exc)
                continue
            if result is not None:
                results.append(result)
    except BaseException:  # KeyboardInterrupt in the main thread: stop the workers before waiting on them
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        scoring.close()
    for extra in errors[1:]:
        log.error("also failed: %s: %s", type(extra).__name__, extra)
    if errors:
        raise errors[0]
    return results
