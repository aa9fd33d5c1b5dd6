"""The model directory as inference sees it: metadata, ONNX files and their checksums. No TensorFlow."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqae import names
from seqae.errors import ChecksumError, ModelDirError


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(model_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(model_dir) / names.METADATA_FILE
    if not path.is_file():
        raise ModelDirError(f"{model_dir}: {names.METADATA_FILE} is missing; expected a model directory written by seqae train")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def write_metadata(model_dir: str | os.PathLike, metadata: dict[str, Any]) -> None:
    """Replace ``seqae.json`` atomically (temporary file, then rename)."""
    model_dir = Path(model_dir)
    fd, tmp = tempfile.mkstemp(prefix=f".{names.METADATA_FILE}.", suffix=".tmp", dir=model_dir)
    with os.fdopen(fd, "w") as fh:
        json.dump(metadata, fh, indent=2)
    os.chmod(tmp, 0o644)
    os.replace(tmp, model_dir / names.METADATA_FILE)


@dataclass(frozen=True)
class ModelArtifacts:
    """A model directory opened for inference, every ONNX file checked against its recorded sha256."""

    directory: Path
    metadata: dict[str, Any]

    @classmethod
    def open(cls, model_dir: str | os.PathLike, files: tuple[str, ...] = (names.SCORER_ONNX,)) -> ModelArtifacts:
        """Open ``model_dir`` and verify ``files``.

        Raises:
            ModelDirError: the directory was never exported or a file is missing.
            ChecksumError: a file's sha256 differs from ``seqae.json`` (changed after export).
        """
        directory = Path(model_dir)
        metadata = read_metadata(directory)
        export = metadata.get("export")
        if not export:
            raise ModelDirError(f"{directory}: not exported; run `seqae export {directory}` first")
        for name in files:
            recorded = export.get("files", {}).get(name, {}).get("sha256")
            path = directory / name
            if recorded is None or not path.is_file():
                raise ModelDirError(f"{path}: missing; expected it from `seqae export` (re-run it)")
            actual = sha256_of(path)
            if actual != recorded:
                raise ChecksumError(
                    f"{path}: sha256 {actual[:16]}... does not match {recorded[:16]}... recorded in "
                    f"{names.METADATA_FILE}; the file changed after export. Re-run `seqae export {directory}`"
                )
        return cls(directory, metadata)

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def model_id(self) -> str:
        return self.metadata["model_id"]

    @property
    def model_version(self) -> int:
        return self.metadata["model_version"]
