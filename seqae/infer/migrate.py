"""Moving an output folder of the earlier layout into the current one (``seqae.infer.commit``).

The earlier layout (seqae before 2026-12) put the data files at ``OUT/*.parquet`` beside
``_manifest/<output>.json`` (commit records), ``_rejects/`` (rejected rows, and under ``_files/`` the
quarantine records), ``_steps/``, ``_manifest.json`` (the last run's report) and ``.seqae.lock`` /
``.seqae.lease``: no engine could read ``OUT`` as one folder of data.

The next run moves it, holding the folder's lock, shard by shard and crash-safe: the committed
shard's data (and steps) file is rewritten under ``embeddings/`` (``steps/``) with the lineage
columns taken from its entry (its rows unchanged: nothing is recomputed, the model is not even
opened), its rejects file copied to ``rejects/``, then its entry is written under ``_seqae/manifest/``
(the commit, as for a new shard) and only then the earlier entry and files removed. Killed at any
point, the shard is committed in one layout or the other, never in neither; with both entries, the
current one wins and the next run removes the other. An entry whose data file is missing or holds
another number of rows was never a valid commit: it is dropped, and the next run recomputes the
shard. Quarantine records move to ``_seqae/quarantine/``, the last run's report to
``_seqae/runs/``; data files without an entry (an interrupted object-store write) are removed
when seqae wrote them, and left, with a warning, when it did not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from seqae import names
from seqae.io import (
    LINEAGE_FIELDS,
    METADATA_KEY,
    OUTPUT_FORMAT,
    AtomicParquetWriter,
    Lineage,
    StagedFile,
    read_metadata,
    rejects_path,
    row_group_rows,
    with_lineage,
)
from seqae.lease import ObjectStore, busy, live_holder
from seqae.storage import Location, is_temporary, read_json, utc_now, write_bytes

log = logging.getLogger(__name__)


class OutputFolder(Protocol):
    """What a migration needs of ``seqae.infer.commit.OutputFolder`` (which imports this module)."""

    location: Location
    legacy: LegacyLayout

    @property
    def staging(self) -> Location: ...
    @property
    def runs(self) -> Location: ...

    def data_file(self, name: str) -> Location: ...
    def steps_file(self, name: str) -> Location: ...
    def rejects_file(self, name: str) -> Location: ...
    def entry_file(self, name: str) -> Location: ...
    def quarantine_file(self, name: str) -> Location: ...
    def put_entry(self, name: str, entry: dict[str, Any]) -> None: ...
    def check_writer(self) -> None: ...

_LEGACY_ROOT_NAMES = {names.LEGACY_MANIFEST_DIR, names.LEGACY_REJECTS_DIR, names.LEGACY_STEPS_DIR,
                      names.LEGACY_SUMMARY_FILE, names.LEGACY_LOCK_FILE, names.LEGACY_LEASE_FILE}


class LegacyLayout:
    """Where the earlier layout put an output folder's files (read, moved and removed; never written)."""

    def __init__(self, location: Location):
        self.location = location
        self._present: bool | None = None

    def present(self) -> bool:
        """Whether anything of the earlier layout is in the folder (one listing of its top level)."""
        if self._present is None:
            self._present = any(info.base_name in _LEGACY_ROOT_NAMES or is_temporary(info.base_name)
                                or (info.type.name == "File" and info.base_name.endswith(names.OUTPUT_SUFFIX))
                                for info in self.location.children())
        return self._present

    def forget(self) -> None:
        self._present = None

    @property
    def entries(self) -> Location:
        return self.location.join(names.LEGACY_MANIFEST_DIR)

    @property
    def quarantine_dir(self) -> Location:
        return self.location.join(names.LEGACY_REJECTS_DIR, names.LEGACY_QUARANTINE_DIR)

    def data_file(self, name: str) -> Location:
        return self.location.join(name)

    def steps_file(self, name: str) -> Location:
        return self.location.join(names.LEGACY_STEPS_DIR, name)

    def rejects_file(self, name: str) -> Location:
        return rejects_path(self.location, name, under=names.LEGACY_REJECTS_DIR)

    def entry_file(self, name: str) -> Location:
        return self.entries.join(f"{name}{names.MANIFEST_SUFFIX}")

    def quarantine_file(self, name: str) -> Location:
        return self.quarantine_dir.join(f"{name}{names.MANIFEST_SUFFIX}")

    def entry_names(self) -> list[str]:
        return sorted(info.base_name[: -len(names.MANIFEST_SUFFIX)] for info in self.entries.children()
                      if info.base_name.endswith(names.MANIFEST_SUFFIX) and not is_temporary(info.base_name)
                      and not info.base_name.startswith("."))

    def read_entry(self, name: str) -> dict[str, Any] | None:
        location = self.entry_file(name)
        if not location.is_file():
            return None
        entry = read_json(location, "manifest entry")
        return entry if isinstance(entry, dict) else None

    def withdraw(self, name: str) -> None:
        """Entry first (from then on the earlier commit does not count), then its files."""
        for location in (self.entry_file(name), self.data_file(name), self.steps_file(name),
                         self.rejects_file(name), self.quarantine_file(name)):
            location.delete()

    def folders(self) -> list[Location]:
        return [self.location, self.entries, self.location.join(names.LEGACY_REJECTS_DIR), self.quarantine_dir,
                self.location.join(names.LEGACY_STEPS_DIR)]

    @contextlib.contextmanager
    def writers_excluded(self):
        """Refuse while a writer of an earlier seqae version holds the folder (its ``.seqae.lock``
        locally, a live ``.seqae.lease`` on an object store), keep it out while the block runs, and
        remove that lock or lease afterwards."""
        if not self.location.is_local:
            holder = live_holder(self.location, names.LEGACY_LEASE_FILE)
            if holder is not None:
                raise busy(self.location, holder)
            yield
            lease = self.location.join(names.LEGACY_LEASE_FILE)
            ObjectStore(lease).delete(lease)
            return
        import fcntl

        path = self.location.join(names.LEGACY_LOCK_FILE).path
        if not os.path.lexists(path) or os.path.islink(path):  # a link is never followed, only removed
            yield
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                raise busy(self.location, holder or "a run of an earlier seqae version") from None
            yield
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        finally:
            os.close(fd)


def _rows(location: Location) -> int | None:
    try:
        with location.filesystem.open_input_file(location.path) as handle:
            return pq.ParquetFile(handle).metadata.num_rows
    except (OSError, pa.ArrowInvalid):
        return None


def _rewrite(source: Location, target: Location, lineage: Lineage, note: dict[str, Any], staging: Location) -> None:
    """``source`` at ``target`` with the lineage columns appended, streamed batch by batch; its footer
    metadata kept, with ``note`` added."""
    metadata = read_metadata(source)
    with source.filesystem.open_input_file(source.path) as handle:
        file = pq.ParquetFile(handle)
        schema = file.schema_arrow.remove_metadata()
        missing = names.MODEL_ID not in schema.names
        if missing:
            schema = pa.schema([*schema, *LINEAGE_FIELDS])
        with AtomicParquetWriter(target, schema, row_group_size=row_group_rows(schema), staging=staging) as writer:
            for batch in file.iter_batches():
                table = pa.Table.from_batches([batch])
                writer.write(with_lineage(table, lineage) if missing else table)
            writer.commit({**metadata, **note})


def _copy(source: Location, target: Location, staging: Location) -> None:
    file = StagedFile(target, staging)
    try:
        source.filesystem.copy_file(source.path, file.location.path)
        file.commit()
    finally:
        file.abort()


def migrate_shard(folder: OutputFolder, name: str) -> bool:
    """Move output ``name`` of the earlier layout (see the module docstring); ``True`` when a committed
    shard was moved. The caller holds the folder's exclusive lock or the shard's lock."""
    legacy = folder.legacy
    entry = legacy.read_entry(name)
    if entry is None:
        return False
    if folder.entry_file(name).is_file():  # moved already, killed before the earlier files were removed
        legacy.withdraw(name)
        return False
    data = legacy.data_file(name)
    rows = _rows(data) if data.is_file() else None
    if rows is None or rows != entry.get("rows_written") or "model_id" not in entry:
        log.warning("%s: its entry %s does not match its data file (%s rows, entry says %s); it was not a "
                    "commit: dropped, the next run recomputes the shard", data, legacy.entry_file(name), rows,
                    entry.get("rows_written"))
        legacy.withdraw(name)
        return False
    folder.check_writer()
    lineage = Lineage(entry["model_id"], int(entry.get("model_version") or 0))
    note = {"output_format": OUTPUT_FORMAT, "migrated_at": utc_now()}
    _rewrite(data, folder.data_file(name), lineage, {**note, "migrated_from": data.uri}, folder.staging)
    steps = legacy.steps_file(name)
    if steps.is_file():
        _rewrite(steps, folder.steps_file(name), lineage, {**note, "migrated_from": steps.uri}, folder.staging)
    rejects = legacy.rejects_file(name)
    if rejects.is_file():
        _copy(rejects, folder.rejects_file(name), folder.staging)
    else:
        folder.rejects_file(name).delete()
    folder.put_entry(name, {**entry, **note, "migrated_from": legacy.entry_file(name).uri})
    legacy.withdraw(name)
    log.info("moved %s (%d rows, model %s v%s) into %s", data, rows, lineage.model_id, lineage.model_version,
             folder.data_file(name))
    return True


def migrate_folder(folder: OutputFolder) -> list[str]:
    """Move everything of the earlier layout in ``folder`` (see the module docstring); the caller
    holds the folder's exclusive lock. Returns the outputs moved.

    Raises:
        FolderBusyError: a writer of an earlier seqae version holds the folder.
    """
    legacy = folder.legacy
    legacy.forget()
    if not legacy.present():
        return []
    with legacy.writers_excluded():
        for location in legacy.folders():
            for info in location.children():
                if info.type.name == "File" and is_temporary(info.base_name):
                    Location(location.filesystem, info.path, info.path).delete()
        moved = [name for name in legacy.entry_names() if migrate_shard(folder, name)]
        _move_quarantine(folder)
        _move_summary(folder)
        _remove_uncommitted(folder)
        _remove_empty(legacy)
    legacy.forget()
    if moved:
        log.warning("%s: moved %d committed shard(s) of the earlier layout into %s/ (lineage columns added, "
                    "nothing recomputed)", folder, len(moved), names.EMBEDDINGS_DIR)
    return moved


def _move_quarantine(folder: OutputFolder) -> None:
    legacy = folder.legacy
    for info in legacy.quarantine_dir.children():
        if not info.base_name.endswith(names.MANIFEST_SUFFIX) or is_temporary(info.base_name):
            continue
        name = info.base_name[: -len(names.MANIFEST_SUFFIX)]
        source = legacy.quarantine_file(name)
        if not folder.entry_file(name).is_file() and not folder.quarantine_file(name).is_file():
            write_bytes(folder.quarantine_file(name), source.read_bytes())
        source.delete()


def _move_summary(folder: OutputFolder) -> None:
    """The earlier layout's last run report, kept as a run of ``_seqae/runs/`` named by its end time."""
    summary = folder.location.join(names.LEGACY_SUMMARY_FILE)
    if not summary.is_file():
        return
    body = summary.read_bytes()
    try:
        finished = str(json.loads(body).get("finished_at") or "")
    except (ValueError, AttributeError):
        finished = ""
    stamp = "".join(c for c in finished if c.isalnum()) or "00000000T000000Z"
    write_bytes(folder.runs.join(f"{stamp}-legacy{names.MANIFEST_SUFFIX}"), body)
    summary.delete()


def _remove_uncommitted(folder: OutputFolder) -> None:
    """Files of the earlier layout that no entry names any more: seqae's are removed (an interrupted
    write), anyone else's are left where they are."""
    legacy = folder.legacy
    for location in (legacy.location, legacy.location.join(names.LEGACY_STEPS_DIR),
                     legacy.location.join(names.LEGACY_REJECTS_DIR), legacy.entries):
        for info in location.children():
            if info.type.name != "File":
                continue
            file = Location(location.filesystem, info.path, info.path)
            if location == legacy.entries and info.base_name.startswith("."):  # a killed writer's shard lock
                file.delete()
            elif info.base_name.endswith(names.OUTPUT_SUFFIX):
                if _written_by_seqae(file):
                    file.delete()
                else:
                    log.warning("%s: not written by seqae; left where it is (readers of %s/ never see it)",
                                file, names.EMBEDDINGS_DIR)


def _written_by_seqae(location: Location) -> bool:
    """Whether a Parquet file's footer carries seqae's key (what every file seqae writes has)."""
    try:
        with location.filesystem.open_input_file(location.path) as handle:
            return METADATA_KEY in (pq.read_metadata(handle).metadata or {})
    except (OSError, pa.ArrowInvalid):
        return False


def _remove_empty(legacy: LegacyLayout) -> None:
    for location in (legacy.quarantine_dir, legacy.location.join(names.LEGACY_REJECTS_DIR), legacy.entries,
                     legacy.location.join(names.LEGACY_STEPS_DIR)):
        if location.is_dir() and not location.children():
            with contextlib.suppress(OSError):
                location.filesystem.delete_dir(location.path)
