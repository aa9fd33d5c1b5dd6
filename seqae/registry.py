"""Which model ``embed`` uses: a small registry under a models root, one current model per name.

A model is promoted only after its parity gate passed. Promotion copies the model directory into
``<root>/<name>/versions/<model_id>/`` (an immutable snapshot: retraining in place can never change
what is being served), then replaces ``<root>/<name>/current.json`` atomically and appends to
``<root>/<name>/history.json``. No Prefect: the flows emit the promotion event.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from seqae import names
from seqae.errors import ModelDirError, SeqaeError
from seqae.infer.artifacts import ModelArtifacts
from seqae.storage import read_json, replace_directory, utc_now, write_json

CURRENT_FILE = "current.json"
HISTORY_FILE = "history.json"
VERSIONS_DIR = "versions"
#: What a served model directory needs (model.keras stays for retraining and evaluation).
SNAPSHOT_FILES = (names.METADATA_FILE, names.MODEL_FILE, names.LOSS_PLOT_FILE, names.ENCODER_ONNX,
                  names.SCORER_ONNX, names.SCORER_FP16_ONNX, names.THRESHOLD_FILE, names.REFERENCE_FILE)


class PromotionError(SeqaeError, ValueError):
    """A model cannot be promoted (not exported, or its parity gate failed)."""


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


class ModelRegistry:
    """A models root on the local filesystem (or a mounted volume shared by the workers)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _folder(self, name: str) -> Path:
        if not name or "/" in name or name.startswith((".", "_")):
            raise SeqaeError(f"model name: expected a plain name such as 'ecg', got {name!r}")
        return self.root / name

    def staging_dir(self, name: str, run: str) -> Path:
        """Where run ``run`` trains and exports a new model for ``name`` before it is promoted; one
        folder per run, so that two retrains (weekly and on drift) never write into each other."""
        if not run or "/" in run or run.startswith("."):
            raise SeqaeError(f"run: expected a plain identifier, got {run!r}")
        return self._folder(name) / "staging" / run

    def current(self, name: str) -> Promotion | None:
        path = self._folder(name) / CURRENT_FILE
        return Promotion(**read_json(path, "registry record")) if path.is_file() else None

    def current_dir(self, name: str) -> Path:
        """The directory of the current model for ``name``.

        Raises:
            SeqaeError: nothing was promoted under ``name`` yet.
        """
        current = self.current(name)
        if current is None:
            raise SeqaeError(f"{self.root}: no model promoted under the name {name!r}; train, export and promote one "
                             "first")
        return Path(current.location)

    def history(self, name: str) -> list[Promotion]:
        path = self._folder(name) / HISTORY_FILE
        return [Promotion(**p) for p in read_json(path, "registry history")] if path.is_file() else []

    def promote(self, model_dir: str | os.PathLike, name: str) -> Promotion:
        """Make ``model_dir`` the current model for ``name``.

        Raises:
            PromotionError: the model was not exported, an ONNX file fails its checksum, or the
                parity gate did not pass.
        """
        try:
            artifacts = ModelArtifacts.open(model_dir, (names.SCORER_ONNX, names.ENCODER_ONNX))
        except ModelDirError as exc:
            raise PromotionError(f"cannot promote: {exc}") from exc
        info = artifacts.info
        parity = info.export.get("parity") or {}
        if not parity.get("passed"):
            raise PromotionError(f"{info.directory}: the parity gate did not pass ({len(parity.get('failures', []))} "
                                 "failure(s) in seqae.json); it cannot be promoted. Re-run `seqae export`")
        folder = self._folder(name)
        target = folder / VERSIONS_DIR / info.model_id
        # Always a fresh snapshot: a re-promotion after `seqae threshold` or `export --fp16` must serve them.
        with replace_directory(target) as tmp:
            for file in SNAPSHOT_FILES:
                if info.path(file).is_file():
                    shutil.copy2(info.path(file), tmp / file)
        ModelArtifacts.open(target, (names.SCORER_ONNX, names.ENCODER_ONNX))  # the copy is whole
        promotion = Promotion(name, info.model_id, info.model_version, str(target.resolve()),
                              str(Path(model_dir).resolve()), True, utc_now())
        write_json(folder / HISTORY_FILE, [p.to_dict() for p in self.history(name)] + [promotion.to_dict()])
        write_json(folder / CURRENT_FILE, promotion.to_dict())  # last: the promotion counts from here
        return promotion
