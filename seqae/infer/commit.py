"""The embed job's output folder and its commit protocol: one owner for naming, skipping, committing
and cleaning up.

Per shard, in this order: the rejects file, the data file, then the manifest entry
``_manifest/<output>.json``. The manifest entry is the commit: a shard counts as done only when its
entry exists, names the same model, ONNX file and input fingerprint, and its data file is there.
Where rename is atomic (local disks) no partial file is ever visible either; on object stores a
data file without an entry may exist after a kill, and ``committed_outputs`` (and any reader that
follows the manifest) ignores it; the rerun overwrites it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seqae import names
from seqae._version import __version__
from seqae.data import Shard
from seqae.errors import SeqaeError
from seqae.io import rejects_path
from seqae.storage import Location, is_temporary, read_json, sha256_text, utc_now, write_json

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

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.step_scores:  # entries written before the option existed match a run without it
            del out["step_scores"]
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
    """A run over many shards: per-shard results and totals (also written to ``_manifest.json``)."""

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


class FolderBusyError(SeqaeError):
    """Another run holds the output folder's lock."""


class OutputFolder:
    """An embed output folder on any ``pyarrow.fs`` filesystem.

    ``out/<name>.parquet`` (data), ``out/_rejects/<name>.rejects.parquet``,
    ``out/_steps/<name>.parquet`` (per-timestamp scores, when asked),
    ``out/_manifest/<name>.parquet.json`` (commit records), ``out/_manifest.json`` (run summary).
    """

    def __init__(self, out: str | os.PathLike | Location):
        self.location = Location.of(out)

    def __str__(self) -> str:
        return self.location.uri

    def data_file(self, name: str) -> Location:
        return self.location.join(name)

    def steps_file(self, name: str) -> Location:
        return self.location.join(names.STEPS_DIR, name)

    def entry_file(self, name: str) -> Location:
        return self.location.join(names.MANIFEST_DIR, f"{name}{names.MANIFEST_SUFFIX}")

    def create(self) -> None:
        if self.location.is_file():
            raise SeqaeError(f"{self.location}: --out is a file; expected a folder (or a new path) for the outputs")
        self.location.mkdir()

    @contextlib.contextmanager
    def lock(self, exclusive: bool):
        """Hold the folder's lock (``.seqae.lock``, local filesystems only) for a block.

        ``embed`` takes it exclusively and refuses at once when anything else holds it (it removes
        temporary files of killed runs, which would be another run's files in progress);
        ``embed_shard`` takes it shared, so shard tasks run side by side and wait for an ``embed`` run.
        Object stores have no such lock: one ``embed`` run per output folder there.
        """
        if not self.location.is_local:
            yield
            return
        import fcntl

        path = Path(self.location.path) / names.LOCK_FILE
        with open(path, "a+") as handle:
            if exclusive:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.seek(0)
                    holder = handle.read().strip() or "embed_shard tasks"
                    raise FolderBusyError(f"{self.location}: another seqae run is writing to this folder ({holder}); "
                                     "wait for it to finish or give another --out") from None
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

    def entry_names(self) -> list[str]:
        """The output names that have a manifest entry (committed), sorted."""
        return sorted(info.base_name[: -len(names.MANIFEST_SUFFIX)]
                      for info in self.location.join(names.MANIFEST_DIR).children()
                      if info.base_name.endswith(names.MANIFEST_SUFFIX) and not is_temporary(info.base_name))

    def read_entry(self, name: str) -> dict[str, Any] | None:
        location = self.entry_file(name)
        if not location.is_file():
            return None
        entry = read_json(location, "manifest entry")
        return entry if isinstance(entry, dict) else None

    def done(self, shard: Shard, name: str, identity: RunIdentity,
             entry: dict[str, Any] | None = None) -> ShardResult | None:
        """The earlier result for ``shard`` if it is committed for the same input and identity.

        The only place that decides whether a shard can be skipped.
        """
        entry = entry if entry is not None else self.read_entry(name)
        if entry is None or entry.get("fingerprint") != shard.fingerprint:
            return None
        if any(entry.get(k) != v for k, v in identity.to_dict().items()):
            return None
        if not self.data_file(entry.get("output", name)).is_file():
            return None
        if identity.step_scores and not self.steps_file(entry.get("output", name)).is_file():
            return None
        return ShardResult(shard.uri, entry["output"], "skipped", entry["rows_in"], entry["rows_written"],
                           entry["rows_rejected"])

    def commit(self, name: str, record: dict[str, Any]) -> None:
        """Write the manifest entry: from now on the shard's output counts (and it is no longer a
        quarantined file)."""
        write_json(self.entry_file(name), {**record, "output": name, "committed_at": utc_now()})
        self.quarantine_file(name).delete()

    def withdraw(self, name: str) -> None:
        """Remove an output: its entry first (from then on it does not count), then its files."""
        self.entry_file(name).delete()
        self.data_file(name).delete()
        self.steps_file(name).delete()
        rejects_path(self.location, name).delete()

    def withdraw_renamed(self, planned: dict[str, str]) -> list[str]:
        """Withdraw outputs whose source shard is now written under another name (``planned``: shard
        URI -> output name), e.g. when a new file's name collides with it; else both would be read."""
        withdrawn = []
        for name in self.entry_names():
            entry = self.read_entry(name) or {}
            source = entry.get("source")
            if source in planned and planned[source] != name:
                log.warning("withdrawing %s: its source %s is now written to %s", name, source, planned[source])
                self.withdraw(name)
                withdrawn.append(name)
        return withdrawn

    def quarantine_file(self, name: str) -> Location:
        return self.location.join(names.REJECTS_DIR, names.QUARANTINE_DIR, f"{name}{names.MANIFEST_SUFFIX}")

    def quarantine(self, shard: Shard, name: str, error: BaseException) -> ShardResult:
        """Record an input file that cannot be used as a whole (``_rejects/_files/<name>.json``),
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

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.location.join(names.SUMMARY_FILE), {**summary, "seqae_version": __version__,
                                                             "finished_at": utc_now()})

    def remove_leftovers(self) -> None:
        """Temporary files of a run that was killed. Only ``embed()`` calls this (one run per output
        folder at a time); ``embed_shard`` never does, so concurrent shard tasks are safe."""
        for folder in (self.location, self.location.join(names.MANIFEST_DIR), self.location.join(names.REJECTS_DIR),
                       self.location.join(names.STEPS_DIR)):
            for info in folder.children():
                if info.type.name == "File" and is_temporary(info.base_name):
                    log.info("removing %s, left by an interrupted run", info.path)
                    Location(self.location.filesystem, info.path, info.path).delete()

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
        return [info.path for folder in (self.location, self.location.join(names.MANIFEST_DIR),
                                         self.location.join(names.REJECTS_DIR))
                for info in folder.children() if info.type.name == "File" and is_temporary(info.base_name)]

    def contains(self, shard: Shard) -> bool:
        """Whether ``shard`` lies inside this folder (our own outputs must never be read back as input)."""
        if shard.filesystem.type_name != self.location.filesystem.type_name:
            return False
        if self.location.is_local:
            return Path(shard.path).resolve().is_relative_to(Path(self.location.path).resolve())
        return shard.path.startswith(self.location.path.rstrip("/") + "/")


def footer_rows(shard: Shard) -> int | None:
    """Rows in a Parquet file by its footer, or None when even the footer cannot be read."""
    import pyarrow.parquet as pq

    try:
        with shard.open() as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    except Exception:  # the file is what is broken; its row count is simply unknown
        return None


def committed_outputs(out: str | os.PathLike | Location) -> list[Location]:
    """The data files of an output folder that have a manifest entry, sorted by name.

    Read outputs through this (or through ``_manifest/``) on object stores, where a data file of an
    interrupted run can be present without its entry.
    """
    folder = OutputFolder(out)
    found = [folder.data_file(name) for name in folder.entry_names()]
    return sorted((loc for loc in found if loc.is_file()), key=lambda loc: loc.path)


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
