"""The batch embedding job: Parquet shards in, embeddings and reconstruction errors out.

    read + validate (thread) --queue--> score (onnxruntime) --queue--> write + commit (thread)

One output file per input shard, written under a temporary name and renamed when complete, then
a manifest entry. A rerun skips shards whose entry matches the model and the input fingerprint,
redoes the others, and never shows a partial file: a kill at any point leaves finished shards
finished and the rest absent. Rows in = rows written + rows rejected, per shard and in total.

Imports neither TensorFlow nor Prefect.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from seqae import __version__, names
from seqae.artifacts import ModelArtifacts
from seqae.data import DataConfig, ShardReader, resolve_shards
from seqae.data.config import check_positive
from seqae.data.source import Shard
from seqae.errors import SeqaeError
from seqae.io import (
    AtomicParquetWriter,
    embedding_schema,
    embedding_table,
    row_group_rows,
    write_rejects,
)
from seqae.session import ScorerSession, SessionOptions

log = logging.getLogger(__name__)

MANIFEST_DIR = "_manifest"
SUMMARY_FILE = "_manifest.json"
#: Sequences per onnxruntime call. Small batches were fastest on a 2-core CPU (cache-resident
#: LSTM state), large ones keep a GPU busy.
DEFAULT_BATCH = {"CPUExecutionProvider": 128, "CUDAExecutionProvider": 16384}


@dataclass(frozen=True)
class EmbedConfig:
    """Options of one embed run.

    Args:
        device: ``auto``, ``cuda`` or ``cpu`` (see ``SessionOptions``).
        fp16: use the fp16 scorer (CUDA only).
        batch_size: sequences per inference call; ``None`` picks per device.
        read_batch_size: rows per Parquet record batch (memory per queue slot).
        queue_size: batches in flight between stages (memory bound with ``read_batch_size``).
        threads: CPU intra-op threads for onnxruntime.
        step_errors: also write ``step_error`` (one error per valid step).
        overwrite: recompute every shard, even those done.
        allow_cpu_nodes: on CUDA, warn instead of failing when a heavy node runs on the CPU.
    """

    device: str = "auto"
    fp16: bool = False
    batch_size: int | None = None
    read_batch_size: int = 16384
    queue_size: int = 4
    threads: int | None = None
    step_errors: bool = False
    overwrite: bool = False
    allow_cpu_nodes: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "read_batch_size", "queue_size"):
            check_positive(name, getattr(self, name), allow_none=name == "batch_size")
        SessionOptions(self.device, self.fp16, self.threads, self.allow_cpu_nodes)  # validates


@dataclass
class ShardResult:
    shard: str
    output: str
    status: str  # "done", "skipped"
    rows_in: int
    rows_written: int
    rows_rejected: int
    seconds: float = 0.0


@dataclass
class EmbedReport:
    out: str
    provider: str
    batch_size: int
    shards: list[ShardResult] = field(default_factory=list)
    seconds: float = 0.0
    fp16_parity: dict[str, Any] | None = None

    @property
    def totals(self) -> dict[str, int]:
        done = [s for s in self.shards if s.status == "done"]
        return {
            "shards": len(self.shards), "shards_done": len(done), "shards_skipped": len(self.shards) - len(done),
            "rows_in": sum(s.rows_in for s in self.shards),
            "rows_written": sum(s.rows_written for s in self.shards),
            "rows_rejected": sum(s.rows_rejected for s in self.shards),
        }

    def to_dict(self) -> dict[str, Any]:
        computed = sum(s.rows_in for s in self.shards if s.status == "done")
        return {"out": self.out, "provider": self.provider, "batch_size": self.batch_size,
                "totals": self.totals, "seconds": round(self.seconds, 3),
                "rows_per_second": round(computed / self.seconds) if self.seconds else None,
                **({"fp16_parity": self.fp16_parity} if self.fp16_parity else {}),
                "shards": [asdict(s) for s in self.shards]}


def output_names_for(shards: list[Shard]) -> dict[str, str]:
    """Output file name per shard URI: its path below the shards' common folder, ``/`` -> ``__``."""
    if len(shards) == 1:
        return {shards[0].uri: posixpath.basename(shards[0].path)}
    base = posixpath.commonpath([posixpath.dirname(s.path) for s in shards])
    out = {}
    for s in shards:
        rel = posixpath.relpath(s.path, base)
        stem = rel.rsplit(".", 1)[0].replace("/", "__")
        out[s.uri] = f"{stem}.parquet"
    return out


def _fp16_check(artifacts: ModelArtifacts, shard: Shard, data_config: DataConfig, outputs: list[str],
                rows: int = 1024) -> dict[str, Any]:
    """fp16 against fp32 on the first rows of the first shard: the fp16 file's parity figure, taken
    where it can be (export runs where TensorFlow is, usually without a GPU)."""
    from seqae.runtime import fp16_parity

    ModelArtifacts.open(artifacts.directory, (names.SCORER_ONNX,))
    reader = ShardReader(shard, data_config, batch_size=rows, num_features=artifacts.metadata["model"]["num_features"])
    batch, _ = next(iter(reader))
    if not len(batch):
        return {"measured": False, "reason": f"no accepted row in the first {rows} rows of {shard.uri}"}
    return fp16_parity(artifacts.path(names.SCORER_FP16_ONNX), artifacts.path(names.SCORER_ONNX),
                       batch.values, batch.lengths, outputs)


def _remove_leftovers(out: Path) -> None:
    """Temporary files of a run that was killed (one run per output directory at a time)."""
    for folder in (out, out / MANIFEST_DIR, out / "_rejects"):
        for path in folder.glob(".*.tmp"):
            log.info("removing %s, left by an interrupted run", path)
            path.unlink(missing_ok=True)


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


class _Stop(Exception):
    pass


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def score_batch(session: ScorerSession, values: np.ndarray, lengths: np.ndarray,
                batch_size: int) -> dict[str, np.ndarray]:
    """Score a read batch in inference batches of rows of similar length.

    Rows are sorted by length and each inference batch is trimmed to its own longest row, so
    padding costs little on either provider. Results come back in the input row order.
    """
    n = len(lengths)
    order = np.argsort(lengths, kind="stable")
    results: dict[str, np.ndarray] = {}
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        lens = lengths[idx]
        out = session.run(values[idx, : int(lens.max())], lens)
        for name, array in out.items():
            if name not in results:
                shape = (n, values.shape[1]) if array.ndim == 2 and name == names.STEP_ERROR else (n, *array.shape[1:])
                results[name] = np.zeros(shape, dtype=np.float32)
            if name == names.STEP_ERROR:
                results[name][idx, : array.shape[1]] = array
            else:
                results[name][idx] = array
    return results


def embed(model_dir: str | os.PathLike, data: str, out: str | os.PathLike, config: EmbedConfig = EmbedConfig(),
          *, data_config: DataConfig | None = None,
          on_progress: Callable[[str, int], None] | None = None) -> EmbedReport:
    """Score every shard at ``data`` with the model's ``scorer.onnx`` and write Parquet under ``out``.

    Args:
        model_dir: an exported model directory (checksums are verified).
        data: Parquet file, directory, glob or URI.
        out: output directory: one ``.parquet`` per input shard, ``_rejects/``, ``_manifest/``,
            ``_manifest.json``.
        config: run options.
        data_config: the data contract; defaults to the one the model was trained with.
        on_progress: called with ``("rows", n)`` after each batch and ``("shard", 1)`` per shard.

    Returns:
        Per-shard and total counts; the same goes to ``out/_manifest.json``.

    Raises:
        DeviceError: ``--device cuda`` without a usable CUDA provider, or heavy nodes off the GPU.
        ContractError: an input file breaks the contract as a whole (shards already finished stay).
    """
    started = time.perf_counter()
    files = (names.SCORER_FP16_ONNX,) if config.fp16 else (names.SCORER_ONNX,)
    artifacts = ModelArtifacts.open(model_dir, files)
    meta = artifacts.metadata
    data_config = data_config or DataConfig.from_dict(meta["data"])
    model = meta["model"]
    predicts = model["mode"] in ("predict", "composite")
    outputs = [names.EMBEDDING, names.RECON_ERROR] + ([names.PRED_ERROR] if predicts else [])
    if config.step_errors:
        outputs.append(names.STEP_ERROR)
    session = ScorerSession(model_dir, SessionOptions(config.device, config.fp16, config.threads,
                                                       config.allow_cpu_nodes), outputs=outputs)
    batch_size = config.batch_size or DEFAULT_BATCH[session.provider]
    onnx_file = files[0]
    onnx_sha = meta["export"]["files"][onnx_file]["sha256"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out)
    shards = resolve_shards(data)
    inside = [s for s in shards if s.filesystem.type_name == "local" and Path(s.path).resolve().is_relative_to(out.resolve())]
    if inside:  # our own outputs, when --out lies below --data: never read them back as input
        log.warning("skipping %d file(s) under the output directory %s", len(inside), out)
        shards = [s for s in shards if s not in inside]
        if not shards:
            raise SeqaeError(f"{data}: every Parquet file found is under the output directory {out}")
    out_names = output_names_for(shards)
    identity = {"model_id": meta["model_id"], "model_version": meta["model_version"], "onnx_sha256": onnx_sha,
                "onnx_file": onnx_file, "step_errors": config.step_errors}
    report = EmbedReport(str(out), session.provider, batch_size)
    if config.fp16:
        report.fp16_parity = _fp16_check(artifacts, shards[0], data_config, outputs)
        log.info("fp16 against fp32 on CUDA: %s", report.fp16_parity)
    todo: list[Shard] = []
    for shard in shards:
        entry_path = out / MANIFEST_DIR / f"{out_names[shard.uri]}.json"
        entry = json.loads(entry_path.read_text()) if entry_path.is_file() and not config.overwrite else None
        if (entry and entry.get("fingerprint") == shard.fingerprint and (out / entry["output"]).is_file()
                and all(entry.get(k) == v for k, v in identity.items())):
            report.shards.append(ShardResult(shard.uri, entry["output"], "skipped", entry["rows_in"],
                                             entry["rows_written"], entry["rows_rejected"]))
            if on_progress:
                on_progress("shard", 1)
                on_progress("rows", entry["rows_in"])
            continue
        todo.append(shard)
    if todo:
        log.info("%d shard(s) to embed, %d already done; %s, batch %d", len(todo), len(shards) - len(todo),
                 session.provider, batch_size)
        _run_pipeline(todo, out, out_names, session, config, data_config, identity, batch_size, predicts,
                      meta, report, on_progress)
    report.shards.sort(key=lambda s: s.shard)
    report.seconds = time.perf_counter() - started
    totals = report.totals
    if totals["rows_in"] != totals["rows_written"] + totals["rows_rejected"]:
        raise SeqaeError(f"row counts do not reconcile: {totals}")
    summary = {**report.to_dict(), **identity, "seqae_version": __version__, "data": str(data),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_json_atomic(out / SUMMARY_FILE, summary)
    return report


def _run_pipeline(shards, out: Path, out_names, session: ScorerSession, config: EmbedConfig,
                  data_config: DataConfig, identity: dict, batch_size: int, predicts: bool, meta: dict,
                  report: EmbedReport, on_progress) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    read_q: queue.Queue = queue.Queue(maxsize=config.queue_size)
    write_q: queue.Queue = queue.Queue(maxsize=config.queue_size)
    num_features = meta["model"]["num_features"]
    embedding_dim = meta["model"]["latent_dim"] or meta["model"]["units"]

    def reader() -> None:
        try:
            for shard in shards:
                shard_reader = ShardReader(shard, data_config, batch_size=config.read_batch_size,
                                           num_features=num_features)
                # Key and passthrough columns keep their input types.
                key_fields = (pa.schema([shard_reader.schema.field(c) for c in data_config.key_columns])
                              if data_config.layout == "sequence" else None)
                _put(read_q, ("start", shard, shard_reader, key_fields), stop)
                for batch, rejects in shard_reader:
                    _put(read_q, ("batch", shard, batch, rejects), stop)
                _put(read_q, ("end", shard, shard_reader.stats), stop)
            _put(read_q, ("done",), stop)
        except _Stop:
            pass
        except BaseException as exc:  # handed to the main thread, which raises it
            errors.append(exc)
            stop.set()

    def writer() -> None:
        current: dict[str, Any] = {}
        try:
            while True:
                item = _get(write_q, stop)
                kind = item[0]
                if kind == "done":
                    return
                if kind == "start":
                    current = {"shard": item[1], "schema": item[2], "writer": None, "rejects": [],
                               "started": time.perf_counter(), "rows": 0}
                elif kind == "batch":
                    table, rejects = item[2], item[3]
                    if current["writer"] is None:
                        current["writer"] = AtomicParquetWriter(out / out_names[current["shard"].uri],
                                                                current["schema"],
                                                                row_group_size=row_group_rows(current["schema"]))
                    current["writer"].write(table)
                    current["rejects"].append(rejects)
                    current["rows"] += table.num_rows
                elif kind == "end":
                    _commit(current, item[2])
                    current = {}
        except _Stop:
            pass
        except BaseException as exc:
            errors.append(exc)
            stop.set()
        finally:
            if current.get("writer") is not None:
                current["writer"].abort()

    def _commit(current: dict, stats) -> None:
        shard: Shard = current["shard"]
        name = out_names[shard.uri]
        written = current["rows"]
        rejected = stats.rows_rejected + stats.windows_rejected
        # Long layout: a row out is a window; rows in = windows formed + step rows rejected.
        rows_in = written + rejected if data_config.layout == "long" else stats.rows_in
        if rows_in != written + rejected:
            raise SeqaeError(f"{shard.uri}: rows in {rows_in} != written {written} + rejected {rejected}")
        file_meta = {**identity, "seqae_version": __version__, "provider": session.provider,
                     "source": shard.uri, "fingerprint": shard.fingerprint, "rows_in": rows_in,
                     "rows_written": written, "rows_rejected": rejected, "stats": stats.to_dict(),
                     "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        # Rejects first, then the data file, then the manifest entry: the entry is the commit.
        write_rejects(out, name, current["rejects"], {**file_meta, "output": name})
        writer = current["writer"] or AtomicParquetWriter(out / name, current["schema"])
        writer.commit(file_meta)
        current["writer"] = None
        seconds = time.perf_counter() - current["started"]
        _write_json_atomic(out / MANIFEST_DIR / f"{name}.json", {**file_meta, "output": name,
                                                                  "seconds": round(seconds, 3)})
        report.shards.append(ShardResult(shard.uri, name, "done", rows_in, written, rejected, round(seconds, 3)))
        done = sum(1 for r in report.shards if r.status == "done")
        log.info("%s -> %s: %d rows in, %d written, %d rejected (%.0f rows/s); %d of %d shards to do are done",
                 shard.uri, name, rows_in, written, rejected, rows_in / max(seconds, 1e-9), done, len(shards))
        if on_progress:
            on_progress("shard", 1)

    threads = [threading.Thread(target=reader, name="seqae-read", daemon=True),
               threading.Thread(target=writer, name="seqae-write", daemon=True)]
    for t in threads:
        t.start()
    try:
        schema = None
        while True:
            item = _get(read_q, stop)
            kind = item[0]
            if kind == "start":
                shard_reader, key_fields = item[2], item[3]
                if key_fields is None:  # long layout: keys are (series, window_start, window_end)
                    sch = shard_reader.schema
                    key_fields = pa.schema([sch.field(data_config.key_column),
                                            pa.field("window_start", sch.field(data_config.time_column).type),
                                            pa.field("window_end", sch.field(data_config.time_column).type)])
                passthrough = pa.schema([shard_reader.schema.field(c) for c in shard_reader.passthrough_columns])
                shard_schema = embedding_schema(key_fields, passthrough, embedding_dim, predicts=predicts,
                                                step_errors=config.step_errors)
                if schema is not None and shard_schema != schema:
                    raise SeqaeError(f"{item[1].uri}: its columns differ from the previous shard's, so its output "
                                     f"would have another schema.\nexpected:\n{schema}\nfound:\n{shard_schema}")
                schema = shard_schema
                _put(write_q, ("start", item[1], schema), stop)
            elif kind == "batch":
                batch, rejects = item[2], item[3]
                if len(batch):
                    results = score_batch(session, batch.values, batch.lengths, batch_size)
                    table = embedding_table(schema, batch.keys, batch.passthrough, results, batch.lengths)
                else:
                    table = schema.empty_table()
                _put(write_q, ("batch", item[1], table, rejects), stop)
                if on_progress:
                    on_progress("rows", len(batch) + rejects.num_rows)
            elif kind == "end":
                _put(write_q, ("end", item[1], item[2]), stop)
            elif kind == "done":
                _put(write_q, ("done",), stop)
                break
        threads[1].join()
    except _Stop:
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        if errors or stop.is_set():
            stop.set()
        for t in threads:
            t.join(timeout=30)
    if errors:
        raise errors[0]


def iter_outputs(out: str | os.PathLike) -> Iterator[Path]:
    """The committed output files of an embed run (no temporary or bookkeeping files)."""
    for path in sorted(Path(out).glob("*.parquet")):
        if not path.name.startswith((".", "_")):
            yield path
