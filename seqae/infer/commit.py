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

import json
import logging
import os
import posixpath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from seqae import names
from seqae._version import __version__
from seqae.data import Shard
from seqae.errors import SeqaeError
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShardResult:
    """What happened to one shard. ``rows_in`` counts input rows (for the long layout: the windows
    formed plus the step rows rejected); ``rows_in == rows_written + rows_rejected``."""

    shard: str
    output: str
    status: str  # "done" (computed now) or "skipped" (committed by an earlier run)
    rows_in: int
    rows_written: int
    rows_rejected: int
    seconds: float = 0.0

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
                "shards": [s.to_dict() for s in self.shards]}


def output_names_for(shards: list[Shard]) -> dict[str, str]:
    """Output file name per shard URI: its path below the shards' common folder, ``/`` -> ``__``."""
    if len(shards) == 1:
        return {shards[0].uri: posixpath.basename(shards[0].path).rsplit(".", 1)[0] + names.OUTPUT_SUFFIX}
    base = posixpath.commonpath([posixpath.dirname(s.path) for s in shards])
    out = {}
    for s in shards:
        rel = posixpath.relpath(s.path, base)
        out[s.uri] = rel.rsplit(".", 1)[0].replace("/", "__") + names.OUTPUT_SUFFIX
    return out


class OutputFolder:
    """An embed output folder on any ``pyarrow.fs`` filesystem.

    ``out/<name>.parquet`` (data), ``out/_rejects/<name>.rejects.parquet``,
    ``out/_manifest/<name>.parquet.json`` (commit records), ``out/_manifest.json`` (run summary).
    """

    def __init__(self, out: str | os.PathLike | Location):
        self.location = Location.of(out)

    def __str__(self) -> str:
        return self.location.uri

    def data_file(self, name: str) -> Location:
        return self.location.join(name)

    def entry_file(self, name: str) -> Location:
        return self.location.join(names.MANIFEST_DIR, f"{name}{names.MANIFEST_SUFFIX}")

    def create(self) -> None:
        if self.location.is_file():
            raise SeqaeError(f"{self.location}: --out is a file; expected a folder (or a new path) for the outputs")
        self.location.mkdir()

    def read_entry(self, name: str) -> dict[str, Any] | None:
        location = self.entry_file(name)
        if not location.is_file():
            return None
        entry = read_json(location, "manifest entry")
        return entry if isinstance(entry, dict) else None

    def done(self, shard: Shard, name: str, identity: RunIdentity) -> ShardResult | None:
        """The earlier result for ``shard`` if it is committed for the same input and identity.

        The only place that decides whether a shard can be skipped.
        """
        entry = self.read_entry(name)
        if entry is None or entry.get("fingerprint") != shard.fingerprint:
            return None
        if any(entry.get(k) != v for k, v in identity.to_dict().items()):
            return None
        if not self.data_file(entry.get("output", name)).is_file():
            return None
        return ShardResult(shard.uri, entry["output"], "skipped", entry["rows_in"], entry["rows_written"],
                           entry["rows_rejected"])

    def commit(self, name: str, record: dict[str, Any]) -> None:
        """Write the manifest entry: from now on the shard's output counts."""
        write_json(self.entry_file(name), {**record, "output": name, "committed_at": utc_now()})

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.location.join(names.SUMMARY_FILE), {**summary, "seqae_version": __version__,
                                                             "finished_at": utc_now()})

    def remove_leftovers(self) -> None:
        """Temporary files of a run that was killed. Only ``embed()`` calls this (one run per output
        folder at a time); ``embed_shard`` never does, so concurrent shard tasks are safe."""
        for folder in (self.location, self.location.join(names.MANIFEST_DIR), self.location.join(names.REJECTS_DIR)):
            for info in folder.children():
                if info.type.name == "File" and is_temporary(info.base_name):
                    log.info("removing %s, left by an interrupted run", info.path)
                    Location(self.location.filesystem, info.path, info.path).delete()

    def contains(self, shard: Shard) -> bool:
        """Whether ``shard`` lies inside this folder (our own outputs must never be read back as input)."""
        if shard.filesystem.type_name != self.location.filesystem.type_name:
            return False
        if self.location.is_local:
            return Path(shard.path).resolve().is_relative_to(Path(self.location.path).resolve())
        return shard.path.startswith(self.location.path.rstrip("/") + "/")


def committed_outputs(out: str | os.PathLike | Location) -> list[Location]:
    """The data files of an output folder that have a manifest entry, sorted by name.

    Read outputs through this (or through ``_manifest/``) on object stores, where a data file of an
    interrupted run can be present without its entry.
    """
    folder = OutputFolder(out)
    found = []
    for info in folder.location.join(names.MANIFEST_DIR).children():
        if info.base_name.endswith(names.MANIFEST_SUFFIX) and not is_temporary(info.base_name):
            name = info.base_name[: -len(names.MANIFEST_SUFFIX)]
            if folder.data_file(name).is_file():
                found.append(folder.data_file(name))
    return sorted(found, key=lambda loc: loc.path)


def reuse_key(identity: RunIdentity, shard: Shard, out: str | os.PathLike | Location, name: str,
              config: dict[str, Any]) -> str | None:
    """A key for reusing a shard's result (an orchestrator's cache): it changes whenever the output
    would, and is ``None`` while the shard has no committed output (nothing to reuse yet).

    It covers the input (fingerprint: URI, size, mtime), the model and ONNX file, the run options and
    the committed manifest entry itself, so a deleted or recomputed output never matches an old key.
    """
    folder = OutputFolder(out)
    entry = folder.read_entry(name)
    if entry is None or folder.done(shard, name, identity) is None:
        return None
    parts = {"identity": identity.to_dict(), "fingerprint": shard.fingerprint, "out": folder.location.uri,
             "name": name, "config": config, "entry": entry, "seqae": __version__}
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))
