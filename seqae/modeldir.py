"""The model directory's metadata (``seqae.json``) read back into typed objects. No TensorFlow.

A model directory is the unit of hand-over between training and serving: ``seqae train`` writes
it, ``seqae export`` adds the ONNX files and their checksums, ``seqae embed`` reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqae import names
from seqae.config import DataConfig, ModelConfig
from seqae.errors import ConfigError, ModelDirError, SeqaeError
from seqae.storage import Location, read_json, write_json

FORMAT = "seqae.model/1"


@dataclass(frozen=True)
class ExportedFile:
    name: str
    sha256: str
    precision: str
    graph: str


@dataclass(frozen=True)
class ModelInfo:
    """What ``seqae.json`` says, typed. ``metadata`` keeps the whole document for writing back.

    Attributes:
        directory: the model directory as a local path (training and export write there; for a model
            directory on an object store, its path inside the store: read it through ``location``).
        model_id, model_version: identity (a new id per training run, the version counts up).
        model: the autoencoder's hyperparameters (``num_features`` set).
        data: the input contract it was trained with.
        feature_names: one per feature.
        files: ONNX files written by ``seqae export`` with their sha256 (empty before export).
        location: where the directory is, on any ``pyarrow.fs`` filesystem (what inference reads).
    """

    directory: Path
    model_id: str
    model_version: int
    model: ModelConfig
    data: DataConfig
    feature_names: tuple[str, ...]
    files: dict[str, ExportedFile] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    location: Location | None = field(default=None, repr=False, compare=False)

    @classmethod
    def read(cls, model_dir: str | os.PathLike | Location) -> ModelInfo:
        """Read and check ``model_dir/seqae.json``.

        Raises:
            ModelDirError: missing, not JSON, not seqae's, or with invalid sections (each named).
        """
        location = Location.of(model_dir)
        # Messages name a local directory as it was given, a remote one by its URI.
        given = model_dir.path if isinstance(model_dir, Location) else model_dir
        directory = Path(given) if location.is_local else Path(location.path)
        shown = str(directory) if location.is_local else location.uri
        path = directory / names.METADATA_FILE if location.is_local else f"{shown}/{names.METADATA_FILE}"
        if not location.join(names.METADATA_FILE).is_file():
            raise ModelDirError(f"{shown}: {names.METADATA_FILE} is missing; expected a model directory "
                                "written by seqae train")
        try:
            meta = read_json(location.join(names.METADATA_FILE), names.METADATA_FILE)
        except SeqaeError as exc:
            raise ModelDirError(str(exc)) from exc
        if not isinstance(meta, dict):
            raise ModelDirError(f"{path}: expected a JSON object written by seqae train, found {type(meta).__name__}")
        missing = [k for k in ("model_id", "model_version", "model", "data") if k not in meta]
        if missing:
            raise ModelDirError(f"{path}: missing key(s) {', '.join(missing)}; expected seqae metadata "
                                "(re-run seqae train)")
        sections = {}
        for section, kind in (("model", ModelConfig), ("data", DataConfig)):
            try:
                sections[section] = kind.from_dict(meta[section], section)
            except ConfigError as exc:
                message = str(exc) if str(exc).startswith(f"{section}: ") else f"{section}: {exc}"
                raise ModelDirError(f"{path}: {message}") from exc
        model, data = sections["model"], sections["data"]
        if model.num_features is None:
            raise ModelDirError(f"{path}: model.num_features is missing; expected the feature count of the data")
        files = {}
        for name, entry in (meta.get("export") or {}).get("files", {}).items():
            files[name] = ExportedFile(name, entry["sha256"], entry.get("precision", "fp32"), entry.get("graph", ""))
        return cls(directory, str(meta["model_id"]), int(meta["model_version"]), model, data,
                   tuple(meta.get("feature_names") or data.feature_names(model.num_features)), files, meta, location)

    @property
    def exported(self) -> bool:
        return bool(self.files)

    @property
    def export(self) -> dict[str, Any]:
        return self.metadata.get("export") or {}

    def path(self, name: str) -> Path:
        """A file of a local model directory (see ``file`` for any filesystem)."""
        return self.directory / name

    @property
    def where(self) -> str:
        """The directory as messages name it: the local path as given, or the URI."""
        if self.location is None or self.location.is_local:
            return str(self.directory)
        return self.location.uri

    def file(self, name: str) -> Location:
        """A file of the model directory on its filesystem (local or an object store)."""
        location = self.location if self.location is not None else Location.of(self.directory)
        if location.is_local:  # keep the path as given (relative paths stay relative in messages)
            return Location(location.filesystem, str(Path(location.path) / name), str(self.directory / name))
        return location.join(name)


def write_metadata(model_dir: str | os.PathLike, metadata: dict[str, Any]) -> None:
    """Replace ``seqae.json`` atomically."""
    write_json(Location.of(Path(model_dir) / names.METADATA_FILE), metadata)
