"""Model directories at any URI (``s3://``, ``file://``, whatever ``pyarrow.fs`` opens). No TensorFlow.

TensorFlow and tf2onnx read and write local files only. So a model directory on an object store is
*staged*: ``staged_model_dir`` hands the caller a local temporary folder (a copy of the directory,
or an empty one for ``seqae train``) and, when the block ends without an error, uploads what
changed file by file, ``seqae.json`` last. ``seqae.json`` is the commit: written last, it lists
every other file with its sha256 under ``artifacts``, so a reader that finds a file whose bytes do
not match the listing (a writer in progress) refuses it instead of mixing two models. Files the new
directory no longer holds are removed after the commit.

Reading where a local path is needed (the Keras model for export and evaluation) goes through
``local_model_dir``: the files are downloaded once into a cache keyed by their sha256
(``$SEQAE_CACHE_DIR``, default ``~/.cache/seqae``) and checked against ``artifacts``.

Local directories are never copied: they are used in place, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from seqae import names
from seqae.errors import ModelDirError, SeqaeError, one_line
from seqae.storage import (
    Location,
    has_uri_scheme,
    is_temporary,
    redact_text,
    redact_uri,
    refuse_credentials,
    write_bytes,
)

log = logging.getLogger(__name__)

#: Key of ``seqae.json`` listing every other file of a directory written to a URI: name -> sha256, size.
ARTIFACTS_KEY = "artifacts"
#: Environment variable naming the cache of downloaded model files.
CACHE_ENV = "SEQAE_CACHE_DIR"
#: ``pyarrow.fs`` filesystems (``type_name``) whose first path part is a bucket (an Azure container),
#: which seqae never creates, and the word a message uses for it.
BUCKET_WORDS = {"s3": "bucket", "gcs": "bucket", "abfs": "container"}


def location_of(where: str | os.PathLike | Location) -> Location:
    """``Location.of`` with credentials refused first (a URI is never a folder name)."""
    if not isinstance(where, Location):
        refuse_credentials(os.fspath(where))
    return Location.of(where)


def _endpoint_hint() -> str:
    """Where an ``s3://`` request went, for a message about an unreachable store."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        return f"; check AWS_ENDPOINT_URL (set to {redact_uri(endpoint)}), the network and the credentials"
    return ("; AWS_ENDPOINT_URL is unset, so AWS's own endpoint was asked: set it to reach MinIO or another "
            "S3-compatible server")


def require_bucket(where: str | os.PathLike | Location, what: str) -> Location:
    """``where`` as a ``Location``, once the bucket (or container) it writes into is known to exist.

    A cheap check before long work whose result goes to ``where`` (``seqae train`` uploads only after
    training): one request, pyarrow's ``get_file_info`` on the bucket (a ``HeadBucket`` on S3). Local
    paths and filesystems without buckets pass unchecked; seqae creates no bucket.

    Args:
        what: what will be written there, as the message names it (``"the model directory"``).

    Raises:
        SeqaeError: credentials in the URI; the bucket does not exist; or the store cannot be reached
            (a closed port, an unknown host, refused credentials). One line; for ``s3://`` it names
            ``AWS_ENDPOINT_URL``.
    """
    text = where.uri if isinstance(where, Location) else os.fspath(where)
    refuse_credentials(text)
    s3 = text.split("://", 1)[0].lower() == "s3" if has_uri_scheme(text) else False
    try:
        location = location_of(where)
    except SeqaeError as exc:  # pyarrow asks AWS for the bucket's region when no endpoint is set
        if not s3:
            raise
        raise SeqaeError(f"{exc}{_endpoint_hint()}") from None
    word = BUCKET_WORDS.get(location.filesystem.type_name)
    if word is None:
        return location
    bucket = location.path.lstrip("/").split("/", 1)[0]
    try:
        info = location.filesystem.get_file_info(bucket)
    except OSError as exc:
        raise SeqaeError(f"{location.uri}: cannot reach the {word} {bucket!r} to check that it exists "
                         f"({redact_text(one_line(exc))}){_endpoint_hint() if s3 else ''}") from None
    if info.type == pafs.FileType.NotFound:
        raise SeqaeError(f"{location.uri}: expected an existing {word} {bucket!r} to write {what} to, found none; "
                         f"create it first (seqae creates no {word})")
    return location


def is_remote(where: str | os.PathLike | Location) -> bool:
    """Whether ``where`` is a URI of a filesystem other than the local one."""
    return not location_of(where).is_local


def _local_path(where: str | os.PathLike | Location, location: Location) -> Path:
    """A local ``where`` as a ``Path``: as given for a plain path (relative paths stay relative in
    messages), the path inside the URI for ``file://``."""
    if isinstance(where, Location) or has_uri_scheme(os.fspath(where)):
        return Path(location.path)
    return Path(where)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "seqae")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _local_files(folder: Path) -> dict[str, Path]:
    """The plain files of a local model directory, hidden ones (staging) left out."""
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def _remote_files(location: Location) -> list[str]:
    return sorted(info.base_name for info in location.children()
                  if info.type.name == "File" and not is_temporary(info.base_name))


def upload_model_dir(local: str | os.PathLike, target: str | os.PathLike | Location, *,
                     previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Upload the local model directory ``local`` to ``target`` file by file, ``seqae.json`` last
    (with ``artifacts``: every other file's sha256 and size), then remove the files of ``previous``
    (the artifacts listed by the directory being replaced) that the new one does not hold. Files whose
    sha256 ``previous`` already lists are not uploaded again.

    Returns:
        The metadata written (``seqae.json`` as uploaded).
    """
    local, target = Path(local), location_of(target)
    files = _local_files(local)
    if names.METADATA_FILE not in files:
        raise ModelDirError(f"{local}: {names.METADATA_FILE} is missing; nothing to upload")
    metadata = json.loads(files.pop(names.METADATA_FILE).read_bytes())
    previous = previous or {}
    artifacts, sent = {}, 0
    for name, path in files.items():
        artifacts[name] = {"sha256": _sha256_file(path), "size": path.stat().st_size}
        if (previous.get(name) or {}).get("sha256") == artifacts[name]["sha256"]:
            continue
        with open(path, "rb") as source, target.filesystem.open_output_stream(target.join(name).path) as sink:
            shutil.copyfileobj(source, sink, 1 << 22)
        sent += 1
    metadata[ARTIFACTS_KEY] = artifacts
    write_bytes(target.join(names.METADATA_FILE), json.dumps(metadata, indent=2, default=str).encode())
    for stale in sorted(set(previous) - set(artifacts)):
        target.join(stale).delete()
    log.info("uploaded %s: %d changed file(s) of %d, then %s", target, sent, len(artifacts), names.METADATA_FILE)
    return metadata


def read_remote_metadata(location: Location) -> tuple[bytes, dict[str, Any]] | None:
    file = location.join(names.METADATA_FILE)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(data)
    except ValueError as exc:
        raise ModelDirError(f"{file}: not a valid {names.METADATA_FILE} ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelDirError(f"{file}: expected a JSON object written by seqae train")
    return data, meta


def _artifacts(meta: dict[str, Any], location: Location) -> dict[str, dict[str, Any]]:
    listed = meta.get(ARTIFACTS_KEY)
    if listed is None:  # written by hand or by another tool: every file there, whatever it holds
        return {name: {} for name in _remote_files(location) if name != names.METADATA_FILE}
    if not isinstance(listed, dict) or not all(isinstance(v, dict) for v in listed.values()):
        raise ModelDirError(f"{location.join(names.METADATA_FILE)}: {ARTIFACTS_KEY}: expected an object of "
                            "name -> {sha256, size}, as seqae writes it")
    return listed


def _download(location: Location, name: str, expected: str | None, dest: Path) -> str:
    """Copy one file to ``dest``; its sha256, checked against ``expected`` when given."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}{names.TMP_SUFFIX}")
    digest = hashlib.sha256()
    try:
        with location.filesystem.open_input_stream(location.join(name).path) as source, open(tmp, "wb") as sink:
            while chunk := source.read(1 << 22):
                digest.update(chunk)
                sink.write(chunk)
        found = digest.hexdigest()
        if expected is not None and found != expected:
            raise ModelDirError(f"{location.join(name)}: sha256 expected {expected[:16]}... (as "
                                f"{names.METADATA_FILE} lists it), found {found[:16]}...: the directory is being "
                                "rewritten; retry once its writer is done")
        os.replace(tmp, dest)
        return found
    finally:
        tmp.unlink(missing_ok=True)


def local_model_dir(where: str | os.PathLike | Location) -> Path:
    """A local path holding the model directory ``where``: itself when it is local, else a copy in
    the cache (downloaded once per content: files are kept under their sha256, the directory under
    the sha256 of its ``seqae.json``). Read-only: never write into it.

    Raises:
        ModelDirError: no ``seqae.json`` there, or a file does not match what it lists.
    """
    location = location_of(where)
    if location.is_local:
        return _local_path(where, location)
    found = read_remote_metadata(location)
    if found is None:
        raise ModelDirError(f"{location.uri}: {names.METADATA_FILE} is missing; expected a model directory "
                            "written by seqae train")
    data, meta = found
    key = hashlib.sha256(data).hexdigest()
    folder = cache_root() / "models" / key
    if (folder / names.METADATA_FILE).is_file():
        return folder
    blobs = cache_root() / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=names.TMP_SUFFIX, dir=folder.parent.parent))
    try:
        for name, entry in _artifacts(meta, location).items():
            expected = entry.get("sha256")
            blob = blobs / expected if expected else None
            if blob is None or not blob.is_file():
                downloaded = stage / f".{name}.download"
                sha = _download(location, name, expected, downloaded)
                blob = blobs / sha
                os.replace(downloaded, blob)
            os.link(blob, stage / name)
        (stage / names.METADATA_FILE).write_bytes(data)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another reader filled the same folder first: theirs is the same
            os.rename(stage, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("%s: cached at %s", location.uri, folder)
    return folder


@contextlib.contextmanager
def staged_model_dir(where: str | os.PathLike | Location, *, fresh: bool = False) -> Iterator[Path]:
    """A local folder to write the model directory ``where`` in; uploaded when the block ends without
    an error (``upload_model_dir``), left as it was otherwise. A local ``where`` is yielded as it is.

    Args:
        fresh: an empty folder (``seqae train`` writes a whole new directory); otherwise a copy of
            the current files (``seqae export``, ``seqae threshold`` add to it).
    """
    location = location_of(where)
    if location.is_local:
        yield _local_path(where, location)
        return
    found = read_remote_metadata(location)
    previous = _artifacts(found[1], location) if found else {}
    if not fresh and found is None:
        raise ModelDirError(f"{location.uri}: {names.METADATA_FILE} is missing; expected a model directory "
                            "written by seqae train")
    with tempfile.TemporaryDirectory(prefix="seqae-model-") as tmp:
        local = Path(tmp) / "model"
        if fresh:
            local.mkdir()
        else:
            shutil.copytree(local_model_dir(location), local)  # the cache's files are hard links: copy them
        yield local
        upload_model_dir(local, location, previous=previous)


def copy_model_files(source: Location, target: Location, files: list[str]) -> dict[str, dict[str, Any]]:
    """Copy ``files`` of one model directory to another (any filesystems), each read once and hashed
    on the way; returns name -> sha256 and size. ``seqae.json`` is the caller's to write, last."""
    copied = {}
    for name in files:
        digest, size = hashlib.sha256(), 0
        with source.filesystem.open_input_stream(source.join(name).path) as stream, \
                target.filesystem.open_output_stream(target.join(name).path) as sink:
            while chunk := stream.read(1 << 22):
                digest.update(chunk)
                size += len(chunk)
                sink.write(chunk)
        copied[name] = {"sha256": digest.hexdigest(), "size": size}
    return copied


@contextlib.contextmanager
def staged_output(out: str | os.PathLike | Location) -> Iterator[Path]:
    """A local folder for a report (``seqae evaluate --out``): ``out`` itself when local; else a
    temporary folder whose files are uploaded to ``out`` when the block ends without an error,
    ``report.json`` last."""
    location = location_of(out)
    if location.is_local:
        path = _local_path(out, location)
        existed = path.exists()
        path.mkdir(parents=True, exist_ok=True)
        try:
            yield path
        except BaseException:
            if not existed and not any(path.iterdir()):  # a failed run leaves no empty folder of its own
                path.rmdir()
            raise
        return
    with tempfile.TemporaryDirectory(prefix="seqae-out-") as tmp:
        yield Path(tmp)
        files = _local_files(Path(tmp))
        last = [n for n in ("report.json",) if n in files]
        for name in [n for n in files if n not in last] + last:
            write_bytes(location.join(name), files[name].read_bytes())


def add_files(where: str | os.PathLike | Location, files: dict[str, bytes]) -> Location:
    """Write ``files`` into the model directory ``where`` on any filesystem. At a URI the files go
    first and ``seqae.json`` is rewritten last with their sha256 under ``artifacts`` (the commit);
    a local directory gets the files written atomically, as before.

    Returns:
        The directory's location.
    """
    location = location_of(where)
    if location.is_local:
        for name, data in files.items():
            write_bytes(location.join(name), data)
        return location
    found = read_remote_metadata(location)
    if found is None:
        raise ModelDirError(f"{location.uri}: {names.METADATA_FILE} is missing; expected a model directory "
                            "written by seqae train")
    meta = found[1]
    artifacts = dict(_artifacts(meta, location))
    for name, data in files.items():
        write_bytes(location.join(name), data)
        artifacts[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    meta[ARTIFACTS_KEY] = artifacts
    write_bytes(location.join(names.METADATA_FILE), json.dumps(meta, indent=2, default=str).encode())
    return location
