"""The model directory's metadata (``seqae.json``) read back into typed objects. No TensorFlow.

A model directory is the unit of hand-over between training and serving: ``seqae train`` writes
it, ``seqae export`` adds the ONNX files and their checksums, ``seqae embed`` reads it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from seqae import names
from seqae.config import DataConfig, ModelConfig
from seqae.configbase import Config
from seqae.errors import ConfigError, ModelDirError, SeqaeError
from seqae.storage import Location, read_json, sha256_text, write_json

FORMAT = "seqae.model/1"
#: What a model id may be: it names a folder in the registry, so never a path.
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SHA256 = re.compile(r"[0-9a-f]{64}")
#: The ONNX files ``export.files`` may list, with their precision and graph.
PRECISIONS = {names.ENCODER_ONNX: "fp32", names.SCORER_ONNX: "fp32", names.SCORER_FP16_ONNX: "fp16",
              names.SCORER_INT8_ONNX: "int8", names.NEIGHBOURS_ONNX: "fp32"}
GRAPHS = {names.ENCODER_ONNX: "encoder", names.SCORER_ONNX: "scorer", names.SCORER_FP16_ONNX: "scorer",
          names.SCORER_INT8_ONNX: "scorer", names.NEIGHBOURS_ONNX: "neighbours"}
REQUIRED_FILES = frozenset({names.ENCODER_ONNX, names.SCORER_ONNX})
#: The sections of seqae.json the ONNX files depend on (checksummed at export).
CONTRACT_KEYS = ("model", "data", "feature_names")

_Section = TypeVar("_Section", bound=Config)


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
    def read(cls, model_dir: str | os.PathLike | Location, *, verify_contract: bool = True) -> ModelInfo:
        """Read and check ``model_dir/seqae.json``: every field seqae uses, and, after export, that the
        sections the ONNX files were exported from are unchanged (``export.contract_sha256``; not with
        ``verify_contract=False``, which ``seqae export`` uses: it records the sections anew).

        Raises:
            ModelDirError: missing, not JSON, not seqae's, or a field is invalid; one line naming the
                file, the field, what was expected and what was found.
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
        model_id, model_version = _model_id(path, meta["model_id"]), _model_version(path, meta["model_version"])
        model, data, num_features = _sections(path, meta)
        feature_names = _feature_names(path, meta.get("feature_names"), num_features, data)
        files = _exported_files(path, meta.get("export"))
        if files and verify_contract:
            _check_contract(path, meta)
        return cls(directory, model_id, model_version, model, data, feature_names, files, meta, location)

    @property
    def num_features(self) -> int:
        """Features per step: ``model.num_features``, which ``read`` refuses to find missing."""
        if self.model.num_features is None:
            raise ModelDirError(f"{self.where}/{names.METADATA_FILE}: model.num_features is missing; expected the "
                                "feature count of the data")
        return self.model.num_features

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


def _bad(path, field_name: str, expected: str, found: Any) -> ModelDirError:
    """The one-line error of an invalid field: file, field, what was expected, what was found."""
    shown = f"{type(found).__name__} {found!r}" if not isinstance(found, (str, int, float)) else repr(found)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ModelDirError(f"{path}: {field_name}: expected {expected}, found {shown}; re-run seqae train (or "
                         "seqae export) rather than editing the file")


def _model_id(path, value: Any) -> str:
    if not isinstance(value, str) or not MODEL_ID.fullmatch(value):
        raise _bad(path, "model_id", "a plain identifier (letters, digits, '.', '_', '-'; as seqae train writes)",
                   value)
    return value


def _model_version(path, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad(path, "model_version", "a positive integer", value)
    return value


def _section(path, meta: dict[str, Any], section: str, kind: type[_Section]) -> _Section:
    try:
        return kind.from_dict(meta[section], section)
    except ConfigError as exc:
        message = str(exc) if str(exc).startswith(f"{section}: ") else f"{section}: {exc}"
        raise ModelDirError(f"{path}: {message}") from exc


def _sections(path, meta: dict[str, Any]) -> tuple[ModelConfig, DataConfig, int]:
    """The ``model`` and ``data`` sections, checked against each other, and the feature count."""
    if meta.get("format", FORMAT) != FORMAT:
        raise _bad(path, "format", repr(FORMAT), meta["format"])
    model = _section(path, meta, "model", ModelConfig)
    data = _section(path, meta, "data", DataConfig)
    num_features = model.num_features
    if num_features is None:
        raise ModelDirError(f"{path}: model.num_features is missing; expected the feature count of the data")
    if data.num_features is not None and data.num_features != num_features:
        raise _bad(path, "data.num_features", f"model.num_features ({num_features}) or null", data.num_features)
    if data.min_length < model.min_length:
        raise _bad(path, "model.horizon", f"at most data.min_length - 1 = {data.min_length - 1} (one step to encode, "
                   "the rest predicted)", model.horizon)
    return model, data, num_features


def _feature_names(path, value: Any, num_features: int, data: DataConfig) -> tuple[str, ...]:
    if value is None:
        return tuple(data.feature_names(num_features))
    if (not isinstance(value, list) or len(value) != num_features
            or not all(isinstance(v, str) and v for v in value)):
        raise _bad(path, "feature_names", f"a list of {num_features} name(s) (model.num_features)", value)
    return tuple(value)


def _exported_files(path, export: Any) -> dict[str, ExportedFile]:
    """``export.files`` checked: known ONNX names only (never a path), a sha256, a precision, a graph."""
    if export is None:
        return {}
    if not isinstance(export, dict):
        raise _bad(path, "export", "an object written by seqae export", export)
    entries = export.get("files")
    if not isinstance(entries, dict) or not REQUIRED_FILES <= set(entries):
        raise _bad(path, "export.files", f"an object naming {' and '.join(sorted(REQUIRED_FILES))} (as seqae export "
                   "writes it)", entries)
    files = {}
    for name, entry in entries.items():
        where = f"export.files.{name}"
        if name not in PRECISIONS:
            raise _bad(path, "export.files", f"ONNX files named {', '.join(PRECISIONS)}", name)
        if not isinstance(entry, dict):
            raise _bad(path, where, "an object with sha256, precision and graph", entry)
        sha = entry.get("sha256")
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise _bad(path, f"{where}.sha256", "64 lowercase hex digits", sha)
        precision = entry.get("precision", "fp32")
        if precision != PRECISIONS[name]:
            raise _bad(path, f"{where}.precision", repr(PRECISIONS[name]), precision)
        graph = entry.get("graph", GRAPHS[name])
        if graph != GRAPHS[name]:
            raise _bad(path, f"{where}.graph", repr(GRAPHS[name]), graph)
        files[name] = ExportedFile(name, sha, precision, graph)
    return files


def contract_sha256(meta: dict[str, Any]) -> str:
    """sha256 of what the ONNX files were exported from (``model``, ``data``, ``feature_names``) as
    canonical JSON; ``seqae export`` records it as ``export.contract_sha256``."""
    return sha256_text(json.dumps({k: meta.get(k) for k in CONTRACT_KEYS}, sort_keys=True, separators=(",", ":")))


def _check_contract(path, meta: dict[str, Any]) -> None:
    recorded = meta["export"].get("contract_sha256")
    if recorded is None:  # exported before seqae recorded it
        return
    actual = contract_sha256(meta)
    if recorded != actual:
        raise ModelDirError(f"{path}: {', '.join(CONTRACT_KEYS)}: expected the sections the ONNX files were exported "
                            f"from (sha256 {str(recorded)[:16]}...), found sha256 {actual[:16]}...: the file was edited "
                            "after export; restore it, or re-run seqae export to serve the edited sections")


def write_metadata(model_dir: str | os.PathLike, metadata: dict[str, Any]) -> None:
    """Replace ``seqae.json`` atomically."""
    write_json(Location.of(Path(model_dir) / names.METADATA_FILE), metadata)
