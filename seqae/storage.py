"""Where files live and how they are written: URIs to ``pyarrow.fs`` filesystems, atomic writes,
hashing and the one clock format. The lowest layer of seqae: it imports nothing of seqae but errors.

Atomicity. On a local filesystem a file is written under a hidden temporary name beside its target
and renamed into place, so a reader sees the whole file or nothing. Object stores (``s3://``,
``gs://``) have no atomic rename (a move is a copy and a delete); there the file is written under its
final name and *the manifest entry written last is the commit*: readers of an output folder go
through the manifest and ignore data files without one (see ``seqae.infer.commit``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import posixpath
import re
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from seqae import names
from seqae.errors import SeqaeError

#: Filesystems whose rename replaces a file atomically (POSIX rename(2)).
ATOMIC_RENAME = frozenset({"local"})


def utc_now() -> str:
    """The time as every seqae record writes it: ISO 8601, UTC, seconds, ``2026-11-29T15:04:05Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_stream(read: Callable[[int], bytes], chunk_size: int = 1 << 22) -> str:
    """sha256 of everything ``read(chunk_size)`` returns until it returns nothing."""
    digest = hashlib.sha256()
    while chunk := read(chunk_size):
        digest.update(chunk)
    return digest.hexdigest()


def has_uri_scheme(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isalnum()


#: Query keys of a URI whose values are secrets (pyarrow's S3, GCS and HDFS options, signed URLs).
SECRET_QUERY_KEYS = frozenset({"access_key", "secret_key", "session_token", "token", "password", "passwd",
                               "credential", "credentials", "signature", "sig", "x-amz-signature",
                               "x-amz-credential", "x-amz-security-token", "kerb_ticket"})
#: ``scheme://user:secret@``; a bare ``user@`` (an HDFS user name) is no secret.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/@?#]*:[^/@?#]*)@")


def redact_uri(text: str) -> str:
    """``text`` with the secrets a URI can carry masked: the user-info part (``s3://KEY:SECRET@bucket``)
    and the values of secret query keys (``?secret_key=...``). For messages and logs."""
    text = _USERINFO.sub(r"\1***@", str(text))
    head, sep, query = text.partition("?")
    if not sep:
        return text
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    masked = [(k, "***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs]
    return f"{head}?{urllib.parse.urlencode(masked, safe='*:/')}"


def _credentials_in(uri: str) -> list[str]:
    """What of a credential ``uri`` carries (user info, secret query keys), by name, never the value."""
    found = ["user info (KEY:SECRET@)"] if _USERINFO.match(uri) else []
    query = uri.partition("?")[2]
    found += [f"query key {k!r}" for k, _ in urllib.parse.parse_qsl(query) if k.lower() in SECRET_QUERY_KEYS]
    return found


def filesystem_of(uri: str) -> tuple[pafs.FileSystem, str]:
    """``pyarrow.fs.FileSystem.from_uri``, with its failures (a relative ``file://`` URI, an unknown
    scheme, an unreachable store) as one ``SeqaeError`` naming the URI.

    Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...) or the
    store's own configuration, never from the URI: a URI lands in logs, run parameters, manifests
    and output metadata, so one that carries a secret is refused, and no message repeats it.
    """
    refuse_credentials(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError, ImportError) as exc:
        reason = redact_uri(" ".join(str(exc).split()))
        raise SeqaeError(f"{redact_uri(uri)}: cannot open this location ({reason}); expected a local "
                         "path or a URI such as file:///abs/path or s3://bucket/prefix") from None


def refuse_credentials(uri: str) -> None:
    """Raise ``SeqaeError`` (the secret masked) when ``uri`` carries credentials; see ``filesystem_of``."""
    carried = _credentials_in(uri)
    if carried:
        raise SeqaeError(f"{redact_uri(uri)}: credentials in a URI are refused ({', '.join(carried)}); they would "
                         "be written to logs, run parameters and manifests. Set them in the environment "
                         "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or the store's own "
                         "configuration")


@dataclass(frozen=True)
class Location:
    """A path on a ``pyarrow.fs`` filesystem, and the URI a user would type to address it again.

    Attributes:
        filesystem: the filesystem (local for plain paths).
        path: the path inside it (absolute for local files).
        uri: ``s3://bucket/key`` for URIs, the absolute path for local files and ``file://`` URIs.
    """

    filesystem: pafs.FileSystem
    path: str
    uri: str

    @classmethod
    def of(cls, where: str | os.PathLike | Location) -> Location:
        """A local path or any URI that ``pyarrow.fs.FileSystem.from_uri`` understands."""
        if isinstance(where, Location):
            return where
        text = os.fspath(where)
        if has_uri_scheme(text):
            scheme = text.split("://", 1)[0]
            filesystem, path = filesystem_of(text)
            uri = path if scheme == "file" else f"{scheme}://{path}"
            return cls(filesystem, path, uri)
        path = os.path.abspath(os.path.expanduser(text))
        return cls(pafs.LocalFileSystem(), path, path)

    @property
    def is_local(self) -> bool:
        return self.filesystem.type_name == "local"

    @property
    def atomic_rename(self) -> bool:
        return self.filesystem.type_name in ATOMIC_RENAME

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    def join(self, *parts: str) -> Location:
        path = posixpath.join(self.path, *parts)
        return Location(self.filesystem, path, posixpath.join(self.uri, *parts))

    @property
    def parent(self) -> Location:
        return Location(self.filesystem, posixpath.dirname(self.path), posixpath.dirname(self.uri))

    def info(self) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path)

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def mkdir(self) -> None:
        self.filesystem.create_dir(self.path, recursive=True)

    def delete(self) -> None:
        """Remove the file if it exists."""
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_file(self.path)

    def children(self) -> list[pafs.FileInfo]:
        """Direct entries of this folder (none when it does not exist)."""
        if not self.is_dir():
            return []
        return self.filesystem.get_file_info(pafs.FileSelector(self.path))

    def read_bytes(self) -> bytes:
        with self.filesystem.open_input_stream(self.path) as stream:
            return stream.read()

    def sha256(self) -> str:
        with self.filesystem.open_input_stream(self.path) as stream:
            return sha256_stream(stream.read)

    def temporary(self) -> Location:
        """A hidden, unique name beside this one (``.name.1a2b3c4d.tmp``); see ``is_temporary``."""
        tmp = f".{self.name}.{uuid.uuid4().hex[:8]}{names.TMP_SUFFIX}"
        return self.parent.join(tmp)

    def __str__(self) -> str:
        return self.uri


def is_temporary(name: str) -> bool:
    """A name ``Location.temporary`` makes: left behind only by a writer that was killed."""
    return name.startswith(".") and name.endswith(names.TMP_SUFFIX)


class AtomicFile:
    """A file that appears whole or not at all (see the module docstring for object stores).

    ``target`` is written at ``self.location`` (a temporary name where rename is atomic, the target
    itself elsewhere); ``commit()`` moves it into place, ``abort()`` removes it.
    """

    def __init__(self, target: str | os.PathLike | Location):
        self.target = Location.of(target)
        self.target.parent.mkdir()
        self.location = self.target.temporary() if self.target.atomic_rename else self.target
        self.done = False

    def commit(self) -> Location:
        if self.location != self.target:
            self.target.filesystem.move(self.location.path, self.target.path)
        self.done = True
        return self.target

    def abort(self) -> None:
        if not self.done:
            self.location.delete()
            self.done = True


@contextlib.contextmanager
def atomic_write(target: str | os.PathLike | Location) -> Iterator[Any]:
    """Write ``target`` through a binary output stream; committed when the block ends without an
    exception, removed otherwise. The one way seqae writes a whole file."""
    file = AtomicFile(target)
    try:
        with file.location.filesystem.open_output_stream(file.location.path) as stream:
            yield stream
    except BaseException:
        file.abort()
        raise
    file.commit()


@contextlib.contextmanager
def replace_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Fill a local folder under a temporary name beside ``target``, then swap it into place.

    A crash leaves the old folder or the new one, never a half-written one; the temporary folder
    is removed when the block fails.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*{names.TMP_SUFFIX}"):
        if is_temporary(stale.name):  # left by a run that was killed while writing this folder
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(Location.of(target).temporary().path)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(Location.of(target).temporary().path)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(target: str | os.PathLike | Location, data: bytes) -> Location:
    with atomic_write(target) as stream:
        stream.write(data)
    return Location.of(target)


def write_json(target: str | os.PathLike | Location, data: Any) -> Location:
    """``data`` as indented JSON, atomically (values JSON does not know are written with ``str``)."""
    return write_bytes(target, json.dumps(data, indent=2, default=str).encode())


def read_json(target: str | os.PathLike | Location, what: str = "JSON file") -> Any:
    """Parse a JSON file; a file that is not JSON is a ``SeqaeError`` naming it."""
    location = Location.of(target)
    try:
        return json.loads(location.read_bytes())
    except json.JSONDecodeError as exc:
        raise SeqaeError(f"{location}: not a valid {what} ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError as exc:
        raise SeqaeError(f"{location}: not a valid {what} (not UTF-8 text: byte {exc.start})") from exc
