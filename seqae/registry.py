"""Which model ``embed`` uses: a small registry under a models root, one current model per name.

A model is promoted only after its parity gate passed. Promotion copies the model directory into
``<root>/<name>/versions/<model_id>/`` (an immutable snapshot: retraining in place can never change
what is being served), then appends to ``<root>/<name>/history.json`` and replaces
``<root>/<name>/current.json`` atomically. Promotions of one name are serialised by an exclusive lock
on ``<root>/<name>/.promotion.lock`` (``flock``, opened with ``O_NOFOLLOW``), so that each ends with
a complete snapshot and the history only ever grows. Every registry file read back is checked field
by field. No Prefect: the flows emit the promotion event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqae import names
from seqae.errors import ModelDirError, SeqaeError
from seqae.infer.artifacts import ModelArtifacts
from seqae.modeldir import MODEL_ID
from seqae.storage import read_json, replace_directory, utc_now, write_json

CURRENT_FILE = "current.json"
HISTORY_FILE = "history.json"
VERSIONS_DIR = "versions"
LOCK_FILE = ".promotion.lock"
#: Seconds a promotion waits for another promotion of the same name before giving up.
LOCK_TIMEOUT = 600.0
#: What a served model directory needs (model.keras stays for retraining and evaluation).
SNAPSHOT_FILES = (names.METADATA_FILE, names.MODEL_FILE, names.LOSS_PLOT_FILE, names.ENCODER_ONNX,
                  names.SCORER_ONNX, names.SCORER_FP16_ONNX, names.SCORER_INT8_ONNX, names.THRESHOLD_FILE,
                  names.REFERENCE_FILE)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

log = logging.getLogger(__name__)


class PromotionError(SeqaeError, ValueError):
    """A model cannot be promoted (not exported, or its parity gate failed)."""


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
            "location": (lambda v: isinstance(v, str) and os.path.isabs(v), "an absolute path"),
            "source": (lambda v: isinstance(v, str) and bool(v), "the promoted model directory"),
            "parity_passed": (lambda v: v is True, "true (only a model whose parity gate passed is promoted)"),
            "promoted_at": (lambda v: isinstance(v, str) and bool(TIMESTAMP.fullmatch(v)),
                            "a time such as 2026-11-29T15:04:05Z"),
        }
        for key, (ok, expected) in checks.items():
            if not ok(data[key]):
                raise RegistryError(f"{source}: {key}: expected {expected}, found {_shown(data[key])}")
        return cls(**data)


class ModelRegistry:
    """A models root on the local filesystem (or a mounted volume shared by the workers)."""

    def __init__(self, root: str | os.PathLike, lock_timeout: float = LOCK_TIMEOUT):
        self.root = Path(root)
        self.lock_timeout = lock_timeout

    def _folder(self, name: str) -> Path:
        if not isinstance(name, str) or not name or "/" in name or name.startswith((".", "_")):
            raise SeqaeError(f"model name: expected a plain name such as 'ecg', got {name!r}")
        folder = self.root / name
        if folder.is_symlink():
            raise RegistryError(f"{folder}: expected a folder of the registry, found a symbolic link (never followed)")
        return folder

    def staging_dir(self, name: str, run: str) -> Path:
        """Where run ``run`` trains and exports a new model for ``name`` before it is promoted; one
        folder per run, so that two retrains (weekly and on drift) never write into each other."""
        if not run or "/" in run or run.startswith("."):
            raise SeqaeError(f"run: expected a plain identifier, got {run!r}")
        return self._folder(name) / "staging" / run

    def _versions(self, name: str) -> Path:
        return self._folder(name) / VERSIONS_DIR

    def current(self, name: str) -> Promotion | None:
        """The current promotion of ``name`` (None before the first).

        Raises:
            RegistryError: ``current.json`` is invalid, names another model name, or its location is not
                this name's snapshot of the model under the registry root.
        """
        path = self._folder(name) / CURRENT_FILE
        if not path.is_file():
            return None
        record = Promotion.from_dict(read_json(path, "registry record"), str(path))
        if record.name != name:
            raise RegistryError(f"{path}: name: expected {name!r}, found {record.name!r}")
        expected = self._versions(name).resolve() / record.model_id  # the snapshot itself is never a link
        if Path(record.location).resolve() != expected:
            raise RegistryError(f"{path}: location: expected {expected} (the snapshot under the registry root "
                                f"{self.root.resolve()}), found {_shown(record.location)}; a location outside the "
                                "root is refused. Promote the model again")
        return record

    def current_dir(self, name: str) -> Path:
        """The directory of the current model for ``name``.

        Raises:
            SeqaeError: nothing was promoted under ``name`` yet, or ``current.json`` is invalid.
        """
        current = self.current(name)
        if current is None:
            raise SeqaeError(f"{self.root}: no model promoted under the name {name!r}; train, export and promote one "
                             "first")
        return Path(current.location)

    def history(self, name: str) -> list[Promotion]:
        """Every promotion of ``name``, oldest first.

        Raises:
            RegistryError: ``history.json`` is not a list of valid records of ``name``.
        """
        path = self._folder(name) / HISTORY_FILE
        if not path.is_file():
            return []
        entries = read_json(path, "registry history")
        if not isinstance(entries, list):
            raise RegistryError(f"{path}: expected a list of promotion records, found {_shown(entries)}; restore it "
                                "from a backup (promotions append to it)")
        records = [Promotion.from_dict(entry, f"{path}: entry {i}") for i, entry in enumerate(entries)]
        for i, record in enumerate(records):
            if record.name != name:
                raise RegistryError(f"{path}: entry {i}: name: expected {name!r}, found {record.name!r}")
        return records

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[Path]:
        """Hold the exclusive promotion lock of ``name`` (waiting up to ``lock_timeout`` seconds).

        The lock file stays (removing it would let two holders lock two different files); a symbolic
        link in its place is refused, never followed.
        """
        import fcntl

        folder = self._folder(name)
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

    def promote(self, model_dir: str | os.PathLike, name: str) -> Promotion:
        """Make ``model_dir`` the current model for ``name``.

        Raises:
            PromotionError: the model was not exported, an ONNX file fails its checksum, or the
                parity gate did not pass.
            RegistryError: ``history.json`` is invalid (it is never rewritten from a bad copy).
        """
        try:
            artifacts = ModelArtifacts.open(model_dir, (names.SCORER_ONNX, names.ENCODER_ONNX))
        except ModelDirError as exc:
            raise PromotionError(f"cannot promote: {exc}") from exc
        info = artifacts.info
        parity = info.export.get("parity") or {}
        if not isinstance(parity, dict) or parity.get("passed") is not True:
            failures = parity.get("failures", []) if isinstance(parity, dict) else []
            raise PromotionError(f"{info.directory}: the parity gate did not pass ({len(failures)} failure(s) in "
                                 "seqae.json); it cannot be promoted. Re-run `seqae export`")
        folder = self._folder(name)
        with self.lock(name):
            history = self.history(name)
            target = self._versions(name) / info.model_id
            # Always a fresh snapshot: a re-promotion after `seqae threshold` or `export --fp16` must serve them.
            with replace_directory(target) as tmp:
                for file in SNAPSHOT_FILES:
                    if info.path(file).is_file():
                        shutil.copy2(info.path(file), tmp / file)
                try:
                    ModelArtifacts.open(tmp, (names.SCORER_ONNX, names.ENCODER_ONNX))  # the copy is whole
                except ModelDirError as exc:
                    raise PromotionError(f"cannot promote: {model_dir} changed while it was copied ({exc}); "
                                         "retry once it is written") from exc
            promotion = Promotion(name, info.model_id, info.model_version, str(target.resolve()),
                                  str(Path(model_dir).resolve()), True, utc_now())
            write_json(folder / HISTORY_FILE, [p.to_dict() for p in history] + [promotion.to_dict()])
            write_json(folder / CURRENT_FILE, promotion.to_dict())  # last: the promotion counts from here
        log.info("promoted %s v%d as %r", promotion.model_id, promotion.model_version, name)
        return promotion
