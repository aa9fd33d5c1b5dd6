"""Which model ``embed`` uses: a small registry under a models root, one current model per name.

The root is a local folder or a URI (``s3://bucket/models``; credentials in it are refused). A model
is promoted only after its parity gate passed. Promotion number ``n`` of a name (1, 2, 3, ...: the
``model_version`` of the record *counts promotions*) goes in three steps:

1. the model directory is copied to ``<root>/<name>/versions/<model_id>-<token>/``, a prefix no other
   promotion writes (``token`` is random), its ``seqae.json`` last with ``model_version = n``, a
   ``promotion`` section and every file's sha256 (``artifacts``). Snapshots are never rewritten
   once the pointer reaches them; readers trust a snapshot only through the pointer.
2. ``<root>/<name>/history/<n>.json``, the promotion record, is *created* only if absent. This claims
   ``n``: history is append-only, one object per promotion, numbers consecutive.
3. ``<root>/<name>/current.json`` is replaced by compare-and-swap from the record read in step 0.

On S3 steps 2 and 3 are conditional writes (``If-None-Match: *``, ``If-Match: <etag>``, through
``seqae.lease.ObjectStore``). A promotion that finds ``n`` already claimed lost a race: it first
moves the pointer on to the claimed record if nobody did (the claimer may have died after step 2;
its snapshot was whole before it claimed), then re-reads and retries with ``n + 1``, at most
``max_tries`` times (then ``PromotionConflictError`` names the last winner). So two promotions
never leave the pointer on a half-written snapshot, and every claimed number reaches the pointer.

On a local filesystem the same steps run under an exclusive lock on ``<root>/<name>/.promotion.lock``
(``flock``, opened with ``O_NOFOLLOW``): the same records, the same counting, no retries. A
``history.json`` written by an older seqae is read as the first promotions. Other stores
(``gs://``, ...) have no conditional put in ``pyarrow.fs``: promotion there is refused unless
``ModelRegistry(root, single_writer=True)`` (the caller guarantees one promoter at a time).

Every registry file read back is checked field by field. No Prefect: the flows emit the promotion event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import posixpath
import random
import re
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqae import names
from seqae.errors import ModelDirError, SeqaeError
from seqae.infer.artifacts import ModelArtifacts
from seqae.lease import ObjectStore, Stored
from seqae.modeldir import MODEL_ID
from seqae.modelstore import ARTIFACTS_KEY, copy_model_files, location_of
from seqae.storage import Location, has_uri_scheme, read_json, utc_now, write_bytes

CURRENT_FILE = "current.json"
HISTORY_FILE = "history.json"
HISTORY_DIR = "history"
VERSIONS_DIR = "versions"
LOCK_FILE = ".promotion.lock"
#: Attempts of one promotion on an object store before it gives up (each lost race is one).
MAX_TRIES = 32
#: Seconds a promotion waits for another promotion of the same name before giving up.
LOCK_TIMEOUT = 600.0
#: What a served model directory needs (model.keras stays for retraining and evaluation).
SNAPSHOT_FILES = (names.METADATA_FILE, names.MODEL_FILE, names.LOSS_PLOT_FILE, names.ENCODER_ONNX,
                  names.SCORER_ONNX, names.SCORER_FP16_ONNX, names.SCORER_INT8_ONNX, names.NEIGHBOURS_ONNX,
                  names.THRESHOLD_FILE, names.NEIGHBOURS_REFERENCE_FILE,
                  names.REFERENCE_FILE)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

log = logging.getLogger(__name__)


class PromotionError(SeqaeError, ValueError):
    """A model cannot be promoted (not exported, or its parity gate failed)."""


class PromotionConflictError(PromotionError):
    """Concurrent promotions of the same name won every attempt of this one (``max_tries``)."""


class RegistryError(SeqaeError, ValueError):
    """A registry file (``current.json``, ``history.json``) is not what seqae wrote, or points outside the root."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Promotion:
    """One promotion: which model became current for ``name``, where it lives, and when."""

    name: str
    model_id: str
    model_version: int
    location: str
    source: str
    parity_passed: bool
    promoted_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Promotion:
        """A record read back, every field checked.

        Raises:
            RegistryError: one line naming ``source`` (file and entry), the field, what was expected
                and what was found.
        """
        fields = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(data, dict):
            raise RegistryError(f"{source}: expected a promotion record (an object with {', '.join(fields)}), "
                                f"found {_shown(data)}")
        unknown, missing = sorted(set(data) - set(fields)), [f for f in fields if f not in data]
        if unknown or missing:
            what = f"unknown key(s) {', '.join(unknown)}" if unknown else f"missing key(s) {', '.join(missing)}"
            raise RegistryError(f"{source}: {what}; expected the keys {', '.join(fields)}")
        checks = {
            "name": (lambda v: isinstance(v, str) and bool(v), "a model name"),
            "model_id": (lambda v: isinstance(v, str) and bool(MODEL_ID.fullmatch(v)), "a plain model id"),
            "model_version": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                              "a positive integer"),
            "location": (lambda v: isinstance(v, str) and (os.path.isabs(v) or has_uri_scheme(v)),
                         "an absolute path or a URI"),
            "source": (lambda v: isinstance(v, str) and bool(v), "the promoted model directory"),
            "parity_passed": (lambda v: v is True, "true (only a model whose parity gate passed is promoted)"),
            "promoted_at": (lambda v: isinstance(v, str) and bool(TIMESTAMP.fullmatch(v)),
                            "a time such as 2026-11-29T15:04:05Z"),
        }
        for key, (ok, expected) in checks.items():
            if not ok(data[key]):
                raise RegistryError(f"{source}: {key}: expected {expected}, found {_shown(data[key])}")
        return cls(**data)


@dataclass
class _Attempt:
    claimed: bool = False


class ModelRegistry:
    """A models root: a local folder, a mounted volume, or a URI such as ``s3://bucket/models``
    (see the module docstring for how promotions stay atomic on each).

    Args:
        root: the models root; credentials in a URI are refused.
        lock_timeout: seconds a local promotion waits for another one's lock.
        max_tries: attempts of a promotion on an object store that loses races (each lost race re-reads
            the pointer and tries the next number).
        single_writer: allow promotion on a store without conditional writes (``gs://``, ...): the
            caller guarantees that one promotion of a name runs at a time.
    """

    def __init__(self, root: str | os.PathLike | Location, lock_timeout: float = LOCK_TIMEOUT, *,
                 max_tries: int = MAX_TRIES, single_writer: bool = False):
        if not isinstance(max_tries, int) or max_tries < 1:
            raise SeqaeError(f"max_tries: expected a positive integer, got {max_tries!r}")
        self._text = root.uri if isinstance(root, Location) else os.fspath(root)
        self.location = location_of(root)  # credentials in a URI are refused here
        self.is_local = self.location.is_local
        if self.is_local:
            self.root: Path | str = Path(self.location.path if has_uri_scheme(self._text) else self._text)
            self.location = Location.of(os.path.abspath(self.root))
        else:
            self.root = self.location.uri
        self.lock_timeout = lock_timeout
        self.max_tries = max_tries
        self.single_writer = single_writer

    # --- where things are -----------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name or name.startswith((".", "_")):
            raise SeqaeError(f"model name: expected a plain name such as 'ecg', got {name!r}")

    def _folder(self, name: str) -> Location:
        self._check_name(name)
        folder = self.location.join(name)
        if self.is_local and Path(folder.path).is_symlink():
            raise RegistryError(f"{folder}: expected a folder of the registry, found a symbolic link (never followed)")
        return folder

    def _address(self, location: Location) -> Path | str:
        """What a caller opens: a local path, or the URI with the root's query (``endpoint_override``)."""
        if self.is_local:
            return Path(location.path)
        base, sep, query = self._text.partition("?")
        relative = posixpath.relpath(location.path, self.location.path)
        return f"{base.rstrip('/')}/{relative}{sep}{query}"

    def _record_location(self, location: Location) -> str:
        return location.path if self.is_local else location.uri

    def staging_dir(self, name: str, run: str) -> Path | str:
        """Where run ``run`` trains and exports a new model for ``name`` before it is promoted; one
        folder per run, so that two retrains (weekly and on drift) never write into each other. A
        local path, or a URI when the root is one."""
        if not run or "/" in run or run.startswith("."):
            raise SeqaeError(f"run: expected a plain identifier, got {run!r}")
        return self._address(self._folder(name).join("staging", run))

    def _versions(self, name: str) -> Location:
        return self._folder(name).join(VERSIONS_DIR)

    # --- reading --------------------------------------------------------------------------------

    def _store(self, location: Location) -> ObjectStore:
        return ObjectStore(location)

    def _read_record(self, location: Location, what: str, stored: Stored | None = None) -> Promotion | None:
        if stored is None:
            stored = self._store(location).get(location)
        if stored is None:
            return None
        try:
            data = json.loads(stored.data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{location}: not a valid {what} ({exc}); restore it or promote the model again") from exc
        return Promotion.from_dict(data, str(location))

    def _current(self, name: str) -> tuple[Promotion | None, Stored | None]:
        location = self._folder(name).join(CURRENT_FILE)
        stored = self._store(location).get(location)
        record = self._read_record(location, "registry record", stored)
        if record is None:
            return None, None
        if record.name != name:
            raise RegistryError(f"{location}: name: expected {name!r}, found {record.name!r}")
        self._check_snapshot(location, record, name)
        return record, stored

    def _check_snapshot(self, source: Location, record: Promotion, name: str) -> None:
        """Refuse a record whose location is not one of this name's snapshots under the root."""
        versions = self._versions(name)
        if self.is_local:
            where = Path(record.location).resolve()  # the snapshot itself is never a link
            base = Path(versions.path).resolve()
            ok = where.parent == base and (where.name == record.model_id or where.name.startswith(f"{record.model_id}-"))
            shown_root: str | Path = Path(self.location.path).resolve()
            expected = f"{base}/{record.model_id}-<token>"
        else:
            prefix = f"{versions.uri}/{record.model_id}-"
            ok = record.location.startswith(prefix) and "/" not in record.location[len(prefix):].rstrip("/")
            shown_root, expected = self.location.uri, f"{prefix}<token>"
        if not ok:
            raise RegistryError(f"{source}: location: expected {expected} (the snapshot under the registry root "
                                f"{shown_root}), found {_shown(record.location)}; a location outside the root is "
                                "refused. Promote the model again")

    def current(self, name: str) -> Promotion | None:
        """The current promotion of ``name`` (None before the first).

        Raises:
            RegistryError: ``current.json`` is invalid, names another model name, or its location is not
                this name's snapshot of the model under the registry root.
        """
        return self._current(name)[0]

    def current_dir(self, name: str) -> Path | str:
        """The directory of the current model for ``name``: a local path, or a URI that ``seqae embed``
        takes as it is.

        Raises:
            SeqaeError: nothing was promoted under ``name`` yet, or ``current.json`` is invalid.
        """
        current = self.current(name)
        if current is None:
            raise SeqaeError(f"{self.root}: no model promoted under the name {name!r}; train, export and promote one "
                             "first")
        if self.is_local:
            return Path(current.location)
        return self._address(Location.of(current.location))

    def _legacy_history(self, name: str) -> list[Promotion]:
        """``history.json``, the list an older seqae kept (its promotions count first)."""
        location = self._folder(name).join(HISTORY_FILE)
        stored = self._store(location).get(location)
        if stored is None:
            return []
        entries = read_json(location, "registry history")
        if not isinstance(entries, list):
            raise RegistryError(f"{location}: expected a list of promotion records, found {_shown(entries)}; restore "
                                "it from a backup (promotions append to it)")
        records = [Promotion.from_dict(entry, f"{location}: entry {i}") for i, entry in enumerate(entries)]
        for i, record in enumerate(records):
            if record.name != name:
                raise RegistryError(f"{location}: entry {i}: name: expected {name!r}, found {record.name!r}")
        return records

    def history(self, name: str) -> list[Promotion]:
        """Every promotion of ``name``, oldest first (``history/<n>.json``, after an older ``history.json``).

        Raises:
            RegistryError: a record is not valid, names another model name, or its number is not the
                number in its file name.
        """
        records = self._legacy_history(name)
        folder = self._folder(name).join(HISTORY_DIR)
        numbered = []
        for info in folder.children():
            stem, _, suffix = info.base_name.partition(".")
            if suffix == "json" and stem.isdigit():
                numbered.append((int(stem), folder.join(info.base_name)))
        for n, location in sorted(numbered):
            record = self._read_record(location, "promotion record")
            if record is None:  # listed a moment ago: removed since, which history never is
                raise RegistryError(f"{location}: listed in the history, then gone; history is append-only, restore it")
            if record.name != name:
                raise RegistryError(f"{location}: name: expected {name!r}, found {record.name!r}")
            if record.model_version != n:
                raise RegistryError(f"{location}: model_version: expected {n} (the number in its name), found "
                                    f"{record.model_version}")
            records.append(record)
        return records

    # --- promoting ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[Path]:
        """Hold the exclusive promotion lock of ``name`` (a local root; waiting up to ``lock_timeout`` s).

        The lock file stays (removing it would let two holders lock two different files); a symbolic
        link in its place is refused, never followed.
        """
        import fcntl

        folder = Path(self._folder(name).path)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise RegistryError(f"{path}: cannot open the promotion lock ({exc.strerror}); expected a plain file (a "
                                "symbolic link is never followed)") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RegistryError(f"{path}: expected a plain file for the promotion lock, found another kind of file")
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise PromotionError(f"{path}: another promotion of {name!r} held the lock for "
                                             f"{self.lock_timeout:g} s; expected it to finish. Retry later") from None
                    time.sleep(0.02)
            yield path
        finally:
            os.close(fd)  # releases the lock

    def _serialised(self, name: str, store: ObjectStore):
        if self.is_local:
            return self.lock(name)
        if not store.conditional and not self.single_writer:
            raise PromotionError(f"{self.root}: promotion needs conditional writes (S3) or a local filesystem; "
                                 f"found {self.location.filesystem.type_name}, which has none in pyarrow.fs. Promote "
                                 "from one process at a time and pass ModelRegistry(..., single_writer=True)")
        return contextlib.nullcontext()

    def _swap(self, store: ObjectStore, location: Location, record: Promotion, previous: Stored | None) -> bool:
        """Point ``current.json`` at ``record`` if it still is ``previous`` (S3: If-Match / If-None-Match;
        elsewhere the caller serialises)."""
        data = json.dumps(record.to_dict(), indent=2).encode()
        if not store.conditional:
            write_bytes(location, data)
            return True
        if previous is None:
            return store.put(location, data, if_absent=True) is not None
        return store.put(location, data, if_etag=previous.etag) is not None

    def promote(self, model_dir: str | os.PathLike, name: str) -> Promotion:
        """Make ``model_dir`` (a local folder or a URI) the current model for ``name``.

        Returns:
            The promotion; its ``model_version`` counts the promotions of ``name`` (1 for the first).

        Raises:
            PromotionError: the model was not exported, an ONNX file fails its checksum, the parity gate
                did not pass, or the store has no conditional writes (see ``single_writer``).
            PromotionConflictError: other promotions of ``name`` won ``max_tries`` races in a row.
            RegistryError: a registry record is invalid (it is never rewritten from a bad copy).
        """
        try:
            artifacts = ModelArtifacts.open(model_dir, (names.SCORER_ONNX, names.ENCODER_ONNX))
        except ModelDirError as exc:
            raise PromotionError(f"cannot promote: {exc}") from exc
        info = artifacts.info
        parity = info.export.get("parity") or {}
        if not isinstance(parity, dict) or parity.get("passed") is not True:
            failures = parity.get("failures", []) if isinstance(parity, dict) else []
            raise PromotionError(f"{info.where}: the parity gate did not pass ({len(failures)} failure(s) in "
                                 "seqae.json); it cannot be promoted. Re-run `seqae export`")
        folder = self._folder(name)
        store = self._store(folder.join(CURRENT_FILE))
        with self._serialised(name, store):
            legacy = self._legacy_history(name)
            if self.is_local:
                self.history(name)  # a bad record refuses the promotion (cheap here; on a store, one read per record)
            snapshot = self._versions(name).join(f"{info.model_id}-{uuid.uuid4().hex[:12]}")
            attempt = _Attempt()
            try:
                copied = self._copy(info, snapshot, model_dir)
                promotion = self._claim(name, info, snapshot, copied, legacy, store, model_dir, attempt)
            finally:
                if not attempt.claimed:  # never referenced by a record: nobody reads it
                    with contextlib.suppress(OSError, FileNotFoundError):
                        snapshot.filesystem.delete_dir(snapshot.path)
        log.info("promoted %s as %r, promotion %d", promotion.model_id, name, promotion.model_version)
        return promotion

    def _copy(self, info, snapshot: Location, model_dir) -> dict[str, Any]:
        """The snapshot's files but ``seqae.json``, each read once and checked against the export."""
        source = info.file(names.METADATA_FILE).parent
        present = {i.base_name for i in source.children() if i.type.name == "File"}  # one listing, not a HEAD per file
        files = [f for f in SNAPSHOT_FILES if f != names.METADATA_FILE and f in present]
        if self.is_local:
            snapshot.mkdir()
        copied = copy_model_files(source, snapshot, files)
        changed = [f for f, e in info.files.items() if f in copied and copied[f]["sha256"] != e.sha256]
        if changed:
            raise PromotionError(f"cannot promote: {model_dir} changed while it was copied ({', '.join(changed)} no "
                                 "longer match seqae.json); retry once it is written")
        return copied

    def _claim(self, name: str, info, snapshot: Location, copied: dict[str, Any], legacy: list[Promotion],
               store: ObjectStore, model_dir, state: _Attempt) -> Promotion:
        folder = self._folder(name)
        pointer = folder.join(CURRENT_FILE)
        source = str(Path(model_dir).resolve()) if location_of(model_dir).is_local and not has_uri_scheme(
            os.fspath(model_dir)) else location_of(model_dir).uri
        winner = None
        for attempt in range(self.max_tries):
            current, stored = self._current(name)
            n = max(current.model_version if current else 0, len(legacy)) + 1
            record = Promotion(name, info.model_id, n, self._record_location(snapshot), source, True, utc_now())
            meta = {**info.metadata, "model_version": n, ARTIFACTS_KEY: copied,
                    "promotion": {"name": name, "number": n, "promoted_at": record.promoted_at,
                                  "trained_version": info.model_version, "source": source}}
            write_bytes(snapshot.join(names.METADATA_FILE), json.dumps(meta, indent=2, default=str).encode())
            claim = folder.join(HISTORY_DIR, f"{n}.json")
            if self.is_local:
                Path(claim.parent.path).mkdir(parents=True, exist_ok=True)
            if store.put(claim, json.dumps(record.to_dict(), indent=2).encode(), if_absent=True) is None:
                winner = self._read_record(claim, "promotion record")
                if winner is not None:  # its claimer may have died before moving the pointer: move it on
                    self._swap(store, pointer, winner, stored)
                log.info("%s: promotion %d of %r went to %s (attempt %d); retrying", self.root, n, name,
                         winner.model_id if winner else "another promotion", attempt + 1)
                time.sleep(random.uniform(0, 0.05 * min(attempt + 1, 8)))
                continue
            state.claimed = True  # from here the snapshot is in the history: never removed
            for _ in range(self.max_tries):
                if self._swap(store, pointer, record, stored):
                    break
                current, stored = self._current(name)
                if current is not None and current.model_version >= n:
                    break  # another promotion moved the pointer on to this one (and maybe past it)
            else:
                raise PromotionConflictError(f"{pointer}: promotion {n} of {name!r} is recorded in the history but "
                                             "the pointer kept changing under it; the next promotion moves it on")
            return record
        shown = f"{winner.model_id} (promotion {winner.model_version})" if winner else "another promotion"
        raise PromotionConflictError(f"{self.root}: {self.max_tries} concurrent promotion(s) of {name!r} won every "
                                     f"attempt of this one; the last winner was {shown}. Retry the promotion")
