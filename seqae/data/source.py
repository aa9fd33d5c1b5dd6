"""Where the Parquet shards are: a file, a directory, a glob; local or any pyarrow.fs URI."""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass

import pyarrow.fs as pafs

from seqae.errors import InputNotFoundError
from seqae.storage import filesystem_of, has_uri_scheme, refuse_credentials, sha256_stream, sha256_text

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Shard:
    """One Parquet file and what identifies its content for idempotence.

    Attributes:
        path: path inside ``filesystem`` (an absolute local path for local files).
        uri: what the user would type to address the file again (``s3://b/k.parquet`` or a local path).
        size: bytes.
        mtime_ns: modification time in nanoseconds, or ``None`` where the filesystem has none.
    """

    path: str
    uri: str
    size: int
    mtime_ns: int | None
    filesystem: pafs.FileSystem

    @property
    def fingerprint(self) -> str:
        """A stable identity of this file's content: sha256 of (uri, size, mtime); cheap, no read."""
        return sha256_text(f"{self.uri}|{self.size}|{self.mtime_ns}")[:32]

    def content_hash(self, chunk_size: int = 1 << 22) -> str:
        """sha256 of the bytes (reads the whole file; for stores whose mtime cannot be trusted)."""
        with self.filesystem.open_input_stream(self.path) as stream:
            return sha256_stream(stream.read, chunk_size)

    def open(self):
        return self.filesystem.open_input_file(self.path)


def _is_data_file(path: str) -> bool:
    name = posixpath.basename(path)
    # Hive/Spark convention: _SUCCESS, _rejects/, .crc files are not data.
    return not name.startswith(("_", ".")) and name.lower().endswith(PARQUET_SUFFIXES)


def _glob_match(path: str, pattern: str) -> bool:
    """Shell-style match where wildcards never cross a ``/`` (as in ``glob.glob``)."""
    parts, pattern_parts = path.split("/"), pattern.split("/")
    return len(parts) == len(pattern_parts) and all(map(fnmatch.fnmatchcase, parts, pattern_parts))


def resolve_shards(location: str, filesystem: pafs.FileSystem | None = None) -> list[Shard]:
    """List the Parquet shards at ``location``, sorted by path.

    Args:
        location: a Parquet file, a directory (searched recursively, skipping names that start with
            ``_`` or ``.``), or a glob (``data/part-*.parquet``); a local path or a URI that
            ``pyarrow.fs.FileSystem.from_uri`` understands (``s3://``, ``gs://``, ``hdfs://``, ``file://``).
        filesystem: use this filesystem instead of inferring one from ``location``.

    Returns:
        The shards, sorted by path, each with its size and modification time.

    Raises:
        InputNotFoundError: nothing matched.
    """
    location = str(location)
    prefix = ""
    if filesystem is None:
        if has_uri_scheme(location):
            refuse_credentials(location)  # before a glob or an error message repeats them
            scheme = location.split("://", 1)[0]
            glob_at = min((location.find(c) for c in _GLOB_CHARS if c in location), default=-1)
            if glob_at < 0:
                filesystem, path = filesystem_of(location)
            else:
                # from_uri needs a real path: resolve the directory before the first wildcard.
                base_uri = location[: location.rfind("/", 0, glob_at)]
                filesystem, base_path = filesystem_of(base_uri)
                path = base_path.rstrip("/") + location[len(base_uri):]
            prefix = "" if scheme == "file" else f"{scheme}://"
        else:
            filesystem = pafs.LocalFileSystem()
            path = os.path.abspath(os.path.expanduser(location))
    else:
        path = location

    def uri_of(p: str) -> str:
        return f"{prefix}{p}" if prefix else p

    def shard_of(info: pafs.FileInfo) -> Shard:
        return Shard(info.path, uri_of(info.path), info.size, info.mtime_ns, filesystem)

    if any(c in path for c in _GLOB_CHARS):
        parts = path.split("/")
        fixed = []
        for part in parts:
            if any(c in part for c in _GLOB_CHARS):
                break
            fixed.append(part)
        base = "/".join(fixed) or "/"
        base_info = filesystem.get_file_info(base)
        infos = []
        if base_info.type == pafs.FileType.Directory:
            infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
        shards = [shard_of(i) for i in infos if i.type == pafs.FileType.File and _glob_match(i.path, path)]
    else:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.File:
            shards = [shard_of(info)]
        elif info.type == pafs.FileType.Directory:
            infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
            shards = [
                shard_of(i) for i in infos
                if i.type == pafs.FileType.File and _is_data_file(i.path)
                and not any(seg.startswith(("_", ".")) for seg in posixpath.relpath(i.path, path).split("/")[:-1])
            ]
        else:
            shards = []
    if not shards:
        raise InputNotFoundError(
            f"{location}: no Parquet file found; expected a .parquet file, a directory of shards or a glob"
        )
    shards = sorted(shards, key=lambda s: s.path)
    if filesystem.type_name == "local":
        shards = _distinct_files(shards)
    return shards


def _distinct_files(shards: list[Shard]) -> list[Shard]:
    """One shard per real file: symbolic links (a link loop repeats every file below it) and other
    aliases of a file already listed are dropped, keeping the first path in sorted order."""
    seen: set[str] = set()
    distinct = []
    for shard in shards:
        real = os.path.realpath(shard.path)
        if real not in seen:
            seen.add(real)
            distinct.append(shard)
    return distinct


def data_root(location: str, shards: list[Shard]) -> str:
    """The folder that output names are taken relative to: the directory a user named, the fixed
    part of a glob, or the folder of a single file. It depends on the location only, never on which
    shards happen to exist, so a new subfolder arriving later renames nothing."""
    if not shards:
        return "/"
    path = shards[0].filesystem.get_file_info(_path_of(location)) if not any(c in location for c in _GLOB_CHARS) else None
    if path is not None and path.type == pafs.FileType.Directory:
        return path.path.rstrip("/") or "/"
    if path is not None and path.type == pafs.FileType.File:
        return posixpath.dirname(path.path)
    fixed = []
    for part in _path_of(location).split("/"):
        if any(c in part for c in _GLOB_CHARS):
            break
        fixed.append(part)
    return "/".join(fixed).rstrip("/") or "/"


def _path_of(location: str) -> str:
    """The filesystem path of ``location`` as ``resolve_shards`` uses it (no wildcard resolution)."""
    location = str(location)
    if has_uri_scheme(location):
        glob_at = min((location.find(c) for c in _GLOB_CHARS if c in location), default=-1)
        if glob_at < 0:
            return filesystem_of(location)[1]
        base_uri = location[: location.rfind("/", 0, glob_at)]
        return filesystem_of(base_uri)[1].rstrip("/") + location[len(base_uri):]
    return os.path.abspath(os.path.expanduser(location))
