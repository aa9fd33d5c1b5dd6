"""The embed job's output folder and its commit protocol: one owner for naming, skipping, committing
and cleaning up.

The layout (``OutputFolder``; names in ``seqae.names``)::

    OUT/embeddings/<output>.parquet        the data, and nothing else: every engine reads it as a folder
    OUT/steps/<output>.parquet             per-timestamp scores (long layout, --step-scores)
    OUT/rejects/<stem>.rejects.parquet     rejected rows with their reasons
    OUT/_seqae/manifest/<output>.json      the commit record of each shard
    OUT/_seqae/quarantine/<output>.json    input files that could not be used, with the reason
    OUT/_seqae/state.json                  the folder's state: every committed shard, totals, models
    OUT/_seqae/runs/<time>.json            one report per run
    OUT/_seqae/staging/, lock, lease       files being written; the folder's lock (local) or lease (S3)

Per shard, in this order: any earlier commit of the output is withdrawn (entry first, then its
files), then the rejects file, the data file, and last the manifest entry ``_seqae/manifest/<output>.json``.
The manifest entry is the commit: a shard counts as done only when its entry exists, names the same
model, ONNX file and input fingerprint, and its data file is there. One writer per output at a time
(``OutputFolder.shard_lock``); an entry or data file of another writer found at commit time is a
``CommitConflictError``, never merged. Every path (``embed``, ``embed_shard`` callers, the flows)
plans through ``plan_embed`` and withdraws outputs of renamed or deleted sources through
``OutputFolder.withdraw_stale``.
Where rename is atomic (local disks) no partial file is ever visible either; on object stores a
data file without an entry may exist after a kill, and ``committed_outputs`` (and any reader that
follows the manifest) ignores it; the rerun overwrites it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqae import names
from seqae._version import __version__
from seqae.data import Shard, resolve_shards
from seqae.data.source import data_root
from seqae.errors import ConfigError, SeqaeError
from seqae.infer.migrate import LegacyLayout, migrate_folder, migrate_shard
from seqae.io import OUTPUT_FORMAT, output_names_for, read_metadata, rejects_path
from seqae.lease import CommitConflictError, FolderBusyError, Lease, busy, live_holder, put_if_absent
from seqae.storage import Location, is_temporary, read_json, sha256_text, utc_now, within, write_bytes, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunIdentity:
    """What an output depends on besides its input: a done shard is reused only when all match."""

    model_id: str
    model_version: int
    onnx_file: str
    onnx_sha256: str
    step_errors: bool
    contract: str  # sha256 of the data contract used (limits such as max_length change the output)
    threshold: str = "none"  # fingerprint of the fitted threshold (score and is_anomaly depend on it)
    step_scores: bool = False  # per-timestamp scores written beside the data file (long layout)
    options: tuple[str, ...] = ()  # other EmbedConfig options that add output columns (seqae.io.output_options)
    steps_format: int = 0  # with step_scores: seqae.infer.steps.STEPS_FORMAT (what the step rows hold)
    neighbours_sha256: str = ""  # neighbours.onnx's sha256 where the model has one (nearest_distance)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.step_scores:  # entries written before the option existed match a run without it
            del out["step_scores"], out["steps_format"]
        if not self.neighbours_sha256:  # entries written before banks existed match a model without one
            del out["neighbours_sha256"]
        if self.options:  # as JSON reads it back; recorded only when one is on, like step_scores
            out["options"] = list(self.options)
        else:
            del out["options"]
        return out


@dataclass(frozen=True)
class ShardResult:
    """What happened to one shard. ``rows_in`` counts input rows (for the long layout: the windows
    formed plus the step rows rejected); ``rows_in == rows_written + rows_rejected + rows_quarantined``.

    ``status``: ``done`` (computed now), ``skipped`` (committed by an earlier run) or ``quarantined``
    (the file could not be used as a whole: ``error`` says why, its rows, where the footer tells
    them, are ``rows_quarantined``).
    """

    shard: str
    output: str
    status: str
    rows_in: int
    rows_written: int
    rows_rejected: int
    seconds: float = 0.0
    rows_quarantined: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EmbedReport:
    """A run over many shards: per-shard results and totals (also written to ``_seqae/runs/<time>.json``).

    Attributes:
        out: the output folder or URI.
        provider: the onnxruntime provider that ran the scorer.
        batch_size: sequences per inference call.
        shards: one ``ShardResult`` per input shard (done, skipped or quarantined).
        seconds: the run's wall time.
        fp16_parity: the fp16 scorer's parity measured on this run's rows (``fp16`` runs only).
        totals: the counts over every shard: ``rows_in`` = ``rows_written`` + ``rows_rejected`` (+
            ``rows_quarantined`` when a file was set aside).
        quarantined: the shards whose input file was set aside, each with its reason.
    """

    out: str
    provider: str
    batch_size: int
    shards: list[ShardResult] = field(default_factory=list)
    seconds: float = 0.0
    fp16_parity: dict[str, Any] | None = None

    @property
    def totals(self) -> dict[str, int]:
        def count(status: str) -> int:
            return sum(1 for s in self.shards if s.status == status)

        totals = {
            "shards": len(self.shards), "shards_done": count("done"), "shards_skipped": count("skipped"),
            "rows_in": sum(s.rows_in for s in self.shards),
            "rows_written": sum(s.rows_written for s in self.shards),
            "rows_rejected": sum(s.rows_rejected for s in self.shards),
        }
        if count("quarantined"):
            totals["shards_quarantined"] = count("quarantined")
            totals["rows_quarantined"] = sum(s.rows_quarantined for s in self.shards)
        return totals

    @property
    def quarantined(self) -> list[ShardResult]:
        return [s for s in self.shards if s.status == "quarantined"]

    def to_dict(self) -> dict[str, Any]:
        computed = sum(s.rows_in for s in self.shards if s.status == "done")
        return {"out": self.out, "provider": self.provider, "batch_size": self.batch_size,
                "totals": self.totals, "seconds": round(self.seconds, 3),
                "rows_per_second": round(computed / self.seconds) if self.seconds else None,
                **({"fp16_parity": self.fp16_parity} if self.fp16_parity else {}),
                "shards": [s.to_dict() for s in self.shards]}


@dataclass(frozen=True)
class PlannedShard:
    """An input shard and the name of its output in the folder."""

    shard: Shard
    output: str


@dataclass(frozen=True)
class OutputPlan:
    """What a run at ``data`` writes: every shard found there with its output name (``shards``) and
    the ones this run embeds (``selected``: all of them, or the one named by ``only``). Outputs of
    sources that are now written under another name, or that were deleted, are withdrawn from it
    (``OutputFolder.withdraw_stale``)."""

    data: str
    root: str
    shards: tuple[PlannedShard, ...]
    selected: tuple[PlannedShard, ...]

    @property
    def outputs(self) -> dict[str, str]:
        """Shard URI -> output name, over every shard at ``data``."""
        return {p.shard.uri: p.output for p in self.shards}


def plan_embed(data: str, out: str | os.PathLike | Location, only: str | None = None) -> OutputPlan:
    """The one planner of ``embed``, ``embed_shard`` callers and the flows: the shards at ``data``
    with their output names in ``out``. Files inside ``out`` (our own outputs, when ``out`` lies
    below ``data``: by path, ``file://`` URI or symbolic link) are never read back as input.

    Raises:
        ConfigError: ``only`` does not name exactly one Parquet file of ``data`` (a folder or a glob
            would otherwise embed just one of the files it names).
    """
    folder = OutputFolder(out)
    found = resolve_shards(data)
    inside = [s for s in found if folder.contains(s)]
    shards = [s for s in found if s not in inside]
    if inside:
        log.warning("skipping %d file(s) under the output folder %s", len(inside), folder)
        if not shards:
            raise SeqaeError(f"{data}: every Parquet file found is under the output folder {folder}")
    root = data_root(data, shards)
    by_uri = output_names_for(shards, root)
    planned = tuple(PlannedShard(s, by_uri[s.uri]) for s in shards)
    selected = planned if only is None else (_only(only, data, planned),)
    return OutputPlan(str(data), root, planned, selected)


def _only(only: str, data: str, planned: tuple[PlannedShard, ...]) -> PlannedShard:
    # On the text first: a path from an event must not probe what this worker's credentials can reach.
    try:
        within(only, data)
    except SeqaeError as exc:
        raise ConfigError(f"only: {exc}") from None
    named = resolve_shards(only)
    is_file = len(named) == 1 and not any(c in str(only) for c in "*?[") and not Location.of(only).is_dir()
    if not is_file:
        raise ConfigError(f"only: expected one Parquet file of {data}, got {only} ({len(named)} file(s))")
    for p in planned:
        if p.shard.uri == named[0].uri:
            return p
    raise ConfigError(f"only: {only} is not a shard of {data}; expected a Parquet file under it")


@dataclass(frozen=True)
class FolderState:
    """What an output folder holds, over every run that wrote it (``_seqae/state.json``).

    ``shards``: one record per committed shard (output, source, model, row counts); ``quarantined``:
    one per input file that could not be used. Over the folder, ``rows_in == rows_written +
    rows_rejected + rows_quarantined`` (``check``).
    """

    out: str
    shards: tuple[dict[str, Any], ...]
    quarantined: tuple[dict[str, Any], ...]

    @property
    def totals(self) -> dict[str, int]:
        def total(key: str, records=self.shards) -> int:
            return sum(int(r.get(key) or 0) for r in records)

        quarantined = total("rows", self.quarantined)
        return {"shards": len(self.shards) + len(self.quarantined), "shards_committed": len(self.shards),
                "shards_quarantined": len(self.quarantined),
                "rows_in": total("rows_in") + quarantined, "rows_written": total("rows_written"),
                "rows_rejected": total("rows_rejected"), "rows_quarantined": quarantined,
                "steps_written": total("steps_written")}

    @property
    def models(self) -> list[dict[str, Any]]:
        """Per model (id and version) that wrote committed rows: its shards and rows."""
        found: dict[tuple[str | None, int | None], dict[str, Any]] = {}  # older records may lack either
        for record in self.shards:
            key = (record.get("model_id"), record.get("model_version"))
            entry = found.setdefault(key, {"model_id": key[0], "model_version": key[1], "shards": 0, "rows_written": 0})
            entry["shards"] += 1
            entry["rows_written"] += int(record.get("rows_written") or 0)
        return sorted(found.values(), key=lambda m: (str(m["model_id"]), m["model_version"] or 0))

    def check(self) -> None:
        """Raise ``SeqaeError`` naming the shard whose entry does not reconcile (rows in != written +
        rejected); the folder's totals then reconcile too."""
        for record in self.shards:
            if record["rows_in"] != record["rows_written"] + record["rows_rejected"]:
                raise SeqaeError(f"{self.out}: shard {record['output']}: rows in {record['rows_in']} != written "
                                 f"{record['rows_written']} + rejected {record['rows_rejected']}; expected every "
                                 "committed entry to reconcile, rerun with --overwrite to recompute it")

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "output_format": OUTPUT_FORMAT, "totals": self.totals, "models": self.models,
                "shards": list(self.shards), "quarantined": list(self.quarantined)}


#: What the folder state keeps of each committed entry.
_STATE_KEYS = ("output", "source", "model_id", "model_version", "rows_in", "rows_written", "rows_rejected",
               "steps_written", "committed_at")


class OutputFolder:
    """An embed output folder on any ``pyarrow.fs`` filesystem: the one owner of its layout (see the
    module docstring). Readers point at ``embeddings`` (data only) or ``steps``; everything seqae
    keeps for itself lies under ``control`` (``_seqae/``)."""

    def __init__(self, out: str | os.PathLike | Location):
        self.location = Location.of(out)
        self._lease: Lease | None = None
        self.legacy = LegacyLayout(self.location)

    def __str__(self) -> str:
        return self.location.uri

    # --- the layout: every path of the folder is named here ---------------------------------------
    @property
    def embeddings(self) -> Location:
        """The folder of data files: point DuckDB, Polars, pandas or Spark here."""
        return self.location.join(names.EMBEDDINGS_DIR)

    @property
    def steps(self) -> Location:
        return self.location.join(names.STEPS_DIR)

    @property
    def rejects(self) -> Location:
        return self.location.join(names.REJECTS_DIR)

    @property
    def control(self) -> Location:
        return self.location.join(names.CONTROL_DIR)

    @property
    def entries(self) -> Location:
        return self.control.join(names.ENTRIES_DIR)

    @property
    def quarantine_dir(self) -> Location:
        return self.control.join(names.QUARANTINE_DIR)

    @property
    def runs(self) -> Location:
        return self.control.join(names.RUNS_DIR)

    @property
    def staging(self) -> Location:
        return self.control.join(names.STAGING_DIR)

    @property
    def state_file(self) -> Location:
        return self.control.join(names.STATE_FILE)

    def data_file(self, name: str) -> Location:
        return self.embeddings.join(name)

    def steps_file(self, name: str) -> Location:
        return self.steps.join(name)

    def rejects_file(self, name: str) -> Location:
        return rejects_path(self.location, name, under=names.REJECTS_DIR)

    def entry_file(self, name: str) -> Location:
        return self.entries.join(f"{name}{names.MANIFEST_SUFFIX}")

    def quarantine_file(self, name: str) -> Location:
        return self.quarantine_dir.join(f"{name}{names.MANIFEST_SUFFIX}")

    def create(self) -> None:
        if self.location.is_file():
            raise SeqaeError(f"{self.location}: --out is a file; expected a folder (or a new path) for the outputs")
        self.location.mkdir()
        self.control.mkdir()
        if self.location.is_local:  # an empty folder reads as no rows; object stores need no folder marker
            self.embeddings.mkdir()

    @contextlib.contextmanager
    def lock(self, exclusive: bool):
        """Hold the folder's lock for a block.

        ``embed`` takes it exclusively and refuses at once when anything else holds it (it removes
        temporary files of killed runs, which would be another run's files in progress);
        ``embed_shard`` takes it shared, so shard tasks run side by side and wait for an ``embed`` run.
        Local folders: ``_seqae/lock`` with ``flock`` (never followed when it is a symbolic link).
        Object stores: ``embed`` holds a lease (``seqae.lease``: conditional writes on S3, renewed
        while held, expiring when its holder dies); ``embed_shard`` refuses while a live one is held.
        """
        if self.location.is_local:
            with self._flock(exclusive):
                yield
            return
        if not exclusive:
            holder = live_holder(self.location)
            if holder is not None:
                raise busy(self.location, holder)
            yield
            return
        with Lease(self.location) as lease:
            self._lease = lease
            try:
                yield
            finally:
                self._lease = None

    @contextlib.contextmanager
    def _flock(self, exclusive: bool):
        import fcntl

        self.control.mkdir()
        path = self.control.join(names.LOCK_FILE).path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError:
            if os.path.islink(path):
                raise SeqaeError(f"{path}: the lock file is a symbolic link; expected a regular file "
                                 "(a lock is never followed), remove the link") from None
            raise
        with os.fdopen(fd, "r+") as handle:
            if exclusive:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    raise busy(self.location, handle.read().strip() or "embed_shard tasks") from None
                handle.seek(0)
                handle.truncate()
                handle.write(f"seqae embed, pid {os.getpid()}, since {utc_now()}")
                handle.flush()
            else:
                fcntl.flock(handle, fcntl.LOCK_SH)
            try:
                yield
            finally:
                if exclusive:  # leave no stale holder behind for the next refusal to name
                    handle.seek(0)
                    handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def shard_lock(self, name: str):
        """Hold output ``name`` alone for a block, waiting for another writer of it: concurrent
        ``embed_shard`` calls for one shard run one after the other, the second sees the first's
        commit. Local: ``flock`` on ``_seqae/manifest/.<name>.lock``; object stores: a lease object there."""
        folder = self.entries
        folder.mkdir()
        lock_name = f".{name}{names.LOCK_SUFFIX}"
        if not self.location.is_local:
            lease = Lease(folder, name=lock_name, holder=f"a writer of {name}").wait()
            try:
                yield
            finally:
                lease.release()
            return
        path = os.path.join(folder.path, lock_name)
        fd = _locked_file(path)
        try:
            yield
        finally:  # removed while held (no lock file stays behind); a waiter on it then retries
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)

    def check_writer(self) -> None:
        """Raise ``FolderBusyError`` when this run's lease on an object store was lost."""
        if self._lease is not None:
            self._lease.check()

    # --- migration from the earlier layout ----------------------------------------------------------
    def migrate(self) -> list[str]:
        """Move what the earlier layout left here (data at ``OUT/*.parquet``, ``_manifest/``,
        ``_rejects/``, ``_steps/``, ``_manifest.json``) into this one; the caller holds the exclusive
        lock. Committed shards stay committed: their data files get the lineage columns from their
        entry (rows unchanged, not recomputed) and are skipped by the next run of the same model.
        Returns the outputs moved (``seqae.infer.migrate``)."""
        return migrate_folder(self)

    def migrate_shard(self, name: str) -> bool:
        """``migrate`` for one output, under its shard lock (``embed_shard``); ``True`` when it moved one."""
        return self.legacy.present() and migrate_shard(self, name)

    # --- entries ------------------------------------------------------------------------------------
    def entry_names(self) -> list[str]:
        """The output names that have a manifest entry (committed), sorted."""
        return sorted(info.base_name[: -len(names.MANIFEST_SUFFIX)]
                      for info in self.entries.children()
                      if info.base_name.endswith(names.MANIFEST_SUFFIX) and not is_temporary(info.base_name))

    def read_entry(self, name: str) -> dict[str, Any] | None:
        location = self.entry_file(name)
        if not location.is_file():
            return None
        entry = read_json(location, "manifest entry")
        return entry if isinstance(entry, dict) else None

    def committed_names(self) -> list[tuple[str, bool]]:
        """``(output name, legacy)`` of every committed shard: entries of this layout, then those of
        the earlier layout not moved yet (``legacy``: its files are where that layout put them)."""
        found = [(name, False) for name in self.entry_names()]
        if self.legacy.present():
            ours = {name for name, _ in found}
            found += [(name, True) for name in self.legacy.entry_names() if name not in ours]
        return sorted(found)

    def done(self, shard: Shard, name: str, identity: RunIdentity,
             entry: dict[str, Any] | None = None) -> ShardResult | None:
        """The earlier result for ``shard`` if it is committed for the same input and identity.

        The only place that decides whether a shard can be skipped (an entry of the earlier layout
        never is: ``migrate`` moves it first).
        """
        entry = entry if entry is not None else self.read_entry(name)
        if entry is None or entry.get("fingerprint") != shard.fingerprint:
            return None
        if any(entry.get(k) != v for k, v in identity.to_dict().items()):
            return None
        if (entry.get("options") or []) != list(identity.options):  # a column asked for then, not now
            return None
        if (entry.get("neighbours_sha256") or "") != identity.neighbours_sha256:  # nearest_distance then, not now
            return None
        if not self.data_file(entry.get("output", name)).is_file():
            return None
        if identity.step_scores and not self.steps_file(entry.get("output", name)).is_file():
            return None
        return ShardResult(shard.uri, entry["output"], "skipped", entry["rows_in"], entry["rows_written"],
                           entry["rows_rejected"])

    def commit(self, name: str, record: dict[str, Any]) -> None:
        """Write the manifest entry: from now on the shard's output counts (and it is no longer a
        quarantined file).

        The entry was withdrawn before the shard's files were written, so one found here was written
        by another writer in the meantime: that is a conflict, raised, never merged (S3: the entry is
        created with ``If-None-Match``; elsewhere it is checked first). So is a data file whose
        footer names another attempt, and, on object stores, a lost lease.

        Raises:
            CommitConflictError: another writer committed this output, or replaced its data file.
            FolderBusyError: this run's lease on the object store was lost.
        """
        self.check_writer()
        attempt = record.get("attempt")
        if attempt is not None and read_metadata(self.data_file(name)).get("attempt") != attempt:
            raise self._conflict(name, "its data file was replaced by another writer")
        self.put_entry(name, {**record, "output": name, "committed_at": utc_now()})
        self.quarantine_file(name).delete()

    def put_entry(self, name: str, entry: dict[str, Any]) -> None:
        """Create ``name``'s entry, refusing to replace one (``CommitConflictError``)."""
        body = json.dumps(entry, indent=2, default=str).encode()
        location = self.entry_file(name)
        if not self.location.atomic_rename:
            if not put_if_absent(location, body):
                raise self._conflict(name, "another writer committed it first")
        elif location.is_file():
            raise self._conflict(name, "another writer committed it first")
        else:
            write_bytes(location, body)

    def _conflict(self, name: str, what: str) -> CommitConflictError:
        return CommitConflictError(f"{self.entry_file(name)}: {what} while this run wrote it; expected no other "
                                   "writer of this shard; nothing of this attempt is committed, rerun to check it")

    def withdraw(self, name: str) -> None:
        """Remove an output: its entry first (from then on it does not count), then its files and
        any quarantine record under its name, in this layout and in the earlier one."""
        self.entry_file(name).delete()
        self.data_file(name).delete()
        self.steps_file(name).delete()
        self.rejects_file(name).delete()
        self.quarantine_file(name).delete()
        if self.legacy.present():
            self.legacy.withdraw(name)

    def quarantine_records(self) -> dict[str, dict[str, Any]]:
        """Output name -> quarantine record, of this layout and (not moved yet) the earlier one."""
        found: dict[str, dict[str, Any]] = {}
        folders = [self.quarantine_dir] + ([self.legacy.quarantine_dir] if self.legacy.present() else [])
        for folder in reversed(folders):  # ours last: they win
            for info in folder.children():
                if info.base_name.endswith(names.MANIFEST_SUFFIX) and not is_temporary(info.base_name):
                    record = read_json(Location(folder.filesystem, info.path, info.path), "quarantine record")
                    if isinstance(record, dict) and "shard" in record:
                        found[info.base_name[: -len(names.MANIFEST_SUFFIX)]] = record
        return found

    def _entry_of(self, name: str, legacy: bool) -> dict[str, Any]:
        return (self.legacy.read_entry(name) if legacy else self.read_entry(name)) or {}

    def sources(self) -> dict[str, str]:
        """Output name -> source shard URI, of every committed entry and quarantine record."""
        found = {name: record["shard"] for name, record in self.quarantine_records().items()}
        for name, legacy in self.committed_names():
            entry = self._entry_of(name, legacy)
            if "source" in entry:
                found[name] = entry["source"]
        return found

    def withdraw_stale(self, plan: OutputPlan) -> list[str]:
        """Withdraw outputs (and quarantine records) whose source shard is now written under another
        name (a new file's name collided with it), or was deleted from below ``plan.root``; else
        they would be read, or counted, twice or for nothing. Sources elsewhere (another data
        folder written to the same output) are left alone."""
        planned, withdrawn = plan.outputs, []
        filesystem = plan.shards[0].shard.filesystem if plan.shards else None
        for name, source in sorted(self.sources().items()):
            if source in planned:
                stale = planned[source] != name
            else:
                stale = filesystem is not None and _deleted_below(filesystem, source, plan.root)
            if stale:
                log.warning("withdrawing %s: its source %s is %s", name, source,
                            f"now written to {planned[source]}" if source in planned else "gone")
                self.withdraw(name)
                withdrawn.append(name)
        return withdrawn

    def quarantine(self, shard: Shard, name: str, error: BaseException) -> ShardResult:
        """Record an input file that cannot be used as a whole (``_seqae/quarantine/<name>.json``),
        with its one-line reason and, where its footer can be read, its row count. Any earlier
        output of it is withdrawn: its entry is removed, so it is neither skipped nor served."""
        rows = footer_rows(shard)
        self.withdraw(name)
        reason = " ".join(str(error).split())
        write_json(self.quarantine_file(name), {"shard": shard.uri, "output": name, "fingerprint": shard.fingerprint,
                                                "error": type(error).__name__, "reason": reason, "rows": rows,
                                                "quarantined_at": utc_now()})
        log.info("quarantined %s: %s", shard.uri, reason)  # the report names it; the CLI prints it once
        return ShardResult(shard.uri, name, "quarantined", rows or 0, 0, 0, rows_quarantined=rows or 0,
                           error=reason)

    # --- the folder's state and the runs' reports -----------------------------------------------------
    def state(self) -> FolderState:
        """Every committed shard and quarantined file of the folder, whichever run wrote it."""
        shards = []
        for name, legacy in self.committed_names():
            entry = self._entry_of(name, legacy)
            record = {k: entry.get(k) for k in _STATE_KEYS if k in entry}
            shards.append({"output": name, **record, **({"layout": "legacy"} if legacy else {})})
        quarantined = tuple({"output": name, "shard": r["shard"], "rows": r.get("rows"), "reason": r.get("reason")}
                            for name, r in sorted(self.quarantine_records().items()))
        return FolderState(self.location.uri, tuple(shards), quarantined)

    def write_run(self, report: dict[str, Any]) -> Location:
        """``_seqae/runs/<time>.json``: one run's report (names sort by time)."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        location = self.runs.join(f"{stamp}-{uuid.uuid4().hex[:6]}{names.MANIFEST_SUFFIX}")
        write_json(location, {**report, "seqae_version": __version__, "finished_at": utc_now()})
        return location

    def write_state(self, last_run: Location | None = None) -> FolderState:
        """Check that the folder reconciles and write ``_seqae/state.json``.

        Raises:
            SeqaeError: a committed entry whose rows in != written + rejected.
        """
        state = self.state()
        state.check()
        extra = {"last_run": posixpath.relpath(last_run.path, self.control.path)} if last_run is not None else {}
        write_json(self.state_file, {**state.to_dict(), **extra, "seqae_version": __version__,
                                     "updated_at": utc_now()})
        return state

    def read_state(self) -> dict[str, Any] | None:
        """``_seqae/state.json`` as the last run left it (``None`` before any run finished)."""
        return read_json(self.state_file, "folder state") if self.state_file.is_file() else None

    def last_run(self) -> dict[str, Any] | None:
        """The report of the last run that finished (``_seqae/runs/<time>.json``, named by the state)."""
        state = self.read_state()
        if not state or "last_run" not in state:
            return None
        return read_json(self.control.join(state["last_run"]), "run report")

    # --- leftovers ----------------------------------------------------------------------------------
    def remove_leftovers(self) -> None:
        """Temporary files of a run that was killed. Only ``embed()`` calls this (one run per output
        folder at a time); ``embed_shard`` never does, so concurrent shard tasks are safe."""
        for path in self._leftovers():
            log.info("removing %s, left by an interrupted run", path)
            Location(self.location.filesystem, path, path).delete()

    def tidy(self) -> list[str]:
        """``remove_leftovers`` when no run is writing to this folder (its lock is free), for
        orchestrators whose shard tasks may be killed (a Ray worker, a preempted pod) and that run
        ``embed_shard`` rather than ``embed``. Returns the names removed; nothing while the folder is busy.
        """
        if not self.location.is_dir():
            return []
        before = self._leftovers()
        if not before:
            return []
        try:
            with self.lock(exclusive=True):
                self.remove_leftovers()
        except FolderBusyError:
            log.info("%s: busy, temporary files of interrupted runs stay for a later run", self.location)
            return []
        return before

    def _leftovers(self) -> list[str]:
        return [info.path for folder in self._folders()
                for info in folder.children() if info.type.name == "File" and is_temporary(info.base_name)]

    def _folders(self) -> list[Location]:
        ours = [self.staging, self.entries, self.quarantine_dir, self.runs, self.control, self.embeddings,
                self.steps, self.rejects]
        return ours + (self.legacy.folders() if self.legacy.present() else [])

    def contains(self, shard: Shard) -> bool:
        """Whether ``shard`` lies inside this folder (our own outputs must never be read back as input)."""
        if shard.filesystem.type_name != self.location.filesystem.type_name:
            return False
        if self.location.is_local:
            return Path(shard.path).resolve().is_relative_to(Path(self.location.path).resolve())
        return shard.path.startswith(self.location.path.rstrip("/") + "/")


def _locked_file(path: str) -> int:
    """An exclusive ``flock`` on ``path`` (created, never followed when a link), retried until the
    file locked is still the one at ``path`` (its holder removes it on release)."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _deleted_below(filesystem, source: str, root: str) -> bool:
    """Whether ``source`` (a shard URI) lay below ``root`` on ``filesystem`` and is gone now."""
    path = source.split("://", 1)[1] if "://" in source else source
    if not path.startswith(root.rstrip("/") + "/"):
        return False
    return filesystem.get_file_info(path).type.name == "NotFound"


def footer_rows(shard: Shard) -> int | None:
    """Rows in a Parquet file by its footer, or None when even the footer cannot be read."""
    import pyarrow.parquet as pq

    try:
        with shard.open() as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    except Exception:  # the file is what is broken; its row count is simply unknown
        return None


def committed_outputs(out: str | os.PathLike | Location, *, steps: bool = False) -> list[Location]:
    """The data files (``steps``: the per-timestamp files) of an output folder that have a manifest
    entry, sorted by name; the one way seqae reads an output folder back.

    Read outputs through this (or through ``_seqae/manifest/``) on object stores, where a data file of
    an interrupted run can be present without its entry. A folder of the earlier layout not yet moved
    (``seqae.infer.migrate``) is read where that layout put its files.
    """
    folder = OutputFolder(out)
    found = []
    for name, legacy in folder.committed_names():
        layout = folder.legacy if legacy else folder
        location = layout.steps_file(name) if steps else layout.data_file(name)
        if location.is_file():
            found.append(location)
    return sorted(found, key=lambda loc: (loc.name, loc.path))


def reuse_key(identity: RunIdentity, shard: Shard, out: str | os.PathLike | Location, name: str,
              config: dict[str, Any]) -> str | None:
    """A key for reusing a shard's result (an orchestrator's cache): it changes whenever the output
    would, and is ``None`` while the shard has no committed output (nothing to reuse yet).

    It covers the input (fingerprint: URI, size, mtime), the model and ONNX file, the run options and
    the committed manifest entry itself, so a deleted or recomputed output never matches an old key.
    """
    folder = OutputFolder(out)
    entry = folder.read_entry(name)
    if entry is None or folder.done(shard, name, identity, entry) is None:
        return None
    parts = {"identity": identity.to_dict(), "fingerprint": shard.fingerprint, "out": folder.location.uri,
             "name": name, "config": config, "entry": entry, "seqae": __version__}
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))
