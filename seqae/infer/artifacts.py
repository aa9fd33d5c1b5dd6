"""A model directory opened for inference: typed metadata and ONNX files checked against their sha256.
No TensorFlow."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seqae import names
from seqae.errors import ChecksumError, ModelDirError
from seqae.modeldir import ModelInfo
from seqae.storage import Location


def check_sha256(file: Location | str, actual: str, recorded: str, where: str) -> None:
    """Raise ``ChecksumError`` naming ``file`` when ``actual`` (the sha256 of the bytes read) is not
    the one ``seqae.json`` records; ``where`` is the model directory as ``seqae export`` takes it."""
    if actual != recorded:
        raise ChecksumError(
            f"{file}: sha256 {actual[:16]}... does not match {recorded[:16]}... recorded in "
            f"{names.METADATA_FILE}; the file changed after export. Re-run `seqae export {where}`"
        )


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex)."""
    return Location.of(path).sha256()


@dataclass(frozen=True)
class ModelArtifacts:
    """A model directory whose ONNX ``files`` were verified when it was opened."""

    info: ModelInfo
    files: tuple[str, ...]

    @classmethod
    def open(cls, model_dir: str | os.PathLike | Location, files: tuple[str, ...] = (names.SCORER_ONNX,), *,
             checksums: bool = True) -> ModelArtifacts:
        """Open ``model_dir`` and verify ``files`` against ``seqae.json``.

        Args:
            checksums: hash each file here; ``False`` when the caller hashes the very bytes it uses
                (``ScorerSession``: a file swapped between a check here and a later read would be used).

        Raises:
            ModelDirError: the directory was never exported or a file is missing.
            ChecksumError: a file's sha256 differs from ``seqae.json`` (changed after export).
        """
        info = ModelInfo.read(model_dir)
        if not info.exported:
            raise ModelDirError(f"{info.where}: not exported; run `seqae export {info.where}` first")
        for name in files:
            file = info.file(name)
            recorded = info.files.get(name)
            if recorded is None or not file.is_file():
                raise ModelDirError(f"{file}: missing; expected it from `seqae export` (re-run it)")
            if checksums:
                check_sha256(file, file.sha256(), recorded.sha256, info.where)
        return cls(info, tuple(files))

    @property
    def directory(self) -> Path:
        return self.info.directory

    def path(self, name: str) -> Path:
        return self.directory / name

    def sha256(self, name: str) -> str:
        return self.info.files[name].sha256
