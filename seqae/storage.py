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
from seqae.errors import ConfigError, SeqaeError

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


#: Query and fragment keys whose values are secrets: pyarrow's S3, GCS, Azure and HDFS options and
#: signed URLs, matched whole (after percent-decoding, any case) ...
SECRET_QUERY_KEYS = frozenset({"access_key", "secret_key", "session_token", "token", "password", "passwd",
                               "credential", "credentials", "signature", "sig", "key", "x-amz-signature",
                               "x-amz-credential", "x-amz-security-token", "kerb_ticket", "account_key",
                               "sas_token", "client_secret"})
#: ... or holding one of these words (``aws_secret_access_key``, ``x-goog-signature``, ``access_token``).
SECRET_KEY_WORDS = ("secret", "token", "password", "passwd", "signature", "credential", "access_key",
                    "account_key", "api_key", "apikey", "private_key")
#: ``scheme://user:secret@``. The secret may hold any character (AWS secret keys hold ``/`` and ``+``,
#: a careless one ``@``, ``?`` or ``#``), so everything up to the *last* ``@`` is taken for user info:
#: over-masking a path that holds ``@`` is the price of never showing part of a secret. A bare
#: ``user@`` (an HDFS user name, an Azure container) is no secret and stays.
_USERINFO = re.compile(r"(://)[^/@?#:]*:.*@", re.DOTALL)
#: One ``key=`` of a query or fragment, and where a secret value ends: at the next ``&name=``.
_PARAMETER = re.compile(r"[?&#]([^=&?#]*)=")
_VALUE_END = re.compile(r"&(?=[^&=]*=)")


def _ignoring_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


#: The same rule as a regular expression that JSON Schema validators (Python's ``re``, ECMA 262)
#: understand, for ``{"not": {"pattern": CREDENTIALS_PATTERN}}`` on a flow parameter: user info, a
#: secret key, or a percent-encoded key (which only the Python check can decode). Slightly broader
#: than ``refuse_credentials`` (a ``&token=`` in a path matches too), never narrower.
CREDENTIALS_PATTERN = "|".join(
    [r"://[^/@?#:]*:[\s\S]*@", r"[?&#][^=&?#]*%[^=&?#]*="]
    + [rf"[?&#]{_ignoring_case(key)}=" for key in sorted(SECRET_QUERY_KEYS)
       if not any(word in key for word in SECRET_KEY_WORDS)]
    + [rf"[?&#][^=&?#]*{_ignoring_case(word)}[^=&?#]*=" for word in SECRET_KEY_WORDS])


def _is_secret_key(key: str) -> bool:
    key = urllib.parse.unquote_plus(key).strip().lower()
    return key in SECRET_QUERY_KEYS or any(word in key for word in SECRET_KEY_WORDS)


def _secret_parameters(text: str) -> Iterator[tuple[re.Match, int]]:
    """Each secret ``key=`` in the query or fragment of ``text`` (user info already masked), with
    where its value ends."""
    tail = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=-1)
    if tail < 0:
        return
    pos = tail
    while match := _PARAMETER.search(text, pos):
        pos = match.end()
        if _is_secret_key(match.group(1)):
            end = _VALUE_END.search(text, pos)
            pos = end.start() if end else len(text)  # the value may hold '?', '#' or '@': skip it whole
            yield match, pos


def redact_uri(text: str) -> str:
    """``text`` with the secrets a URI can carry masked, whatever characters they hold: the user-info
    part (``s3://KEY:SECRET@bucket`` -> ``s3://***@bucket``) and the values of secret keys in the
    query or fragment (``?secret_key=...``, ``#token=...``). For messages and logs."""
    text = _USERINFO.sub(r"\1***@", str(text))
    for match, end in reversed(list(_secret_parameters(text))):
        text = f"{text[:match.end()]}***{text[end:]}"
    return text


def redact_text(text: str) -> str:
    """A message with every URI in it masked (``redact_uri`` per word that holds ``://``), the rest
    left as it is; on one line."""
    return " ".join(redact_uri(word) if "://" in word else word for word in str(text).split())


def _credentials_in(uri: str) -> list[str]:
    """What of a credential ``uri`` carries (user info, secret keys), by name, never the value."""
    found = ["user info (KEY:SECRET@)"] if _USERINFO.search(uri) else []
    masked = _USERINFO.sub(r"\1***@", uri)
    fragment = masked.find("#")
    for match, _ in _secret_parameters(masked):
        part = "fragment" if 0 <= fragment <= match.start() else "query"
        found.append(f"{part} key {urllib.parse.unquote_plus(match.group(1)).strip()!r}")
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
    """Raise ``SeqaeError`` (the secret masked) when ``uri`` carries credentials (user info, whatever
    characters the secret holds; a secret key in the query or the fragment); see ``filesystem_of``.
    Text without ``://`` is a local path, where ``?``, ``#`` and ``@`` are plain characters."""
    carried = _credentials_in(str(uri)) if "://" in str(uri) else []
    if carried:
        raise SeqaeError(f"{redact_uri(uri)}: credentials in a URI are refused ({', '.join(carried)}); they would "
                         "be written to logs, run parameters and manifests. Set them in the environment "
                         "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or the store's own "
                         "configuration")


def require_local(text: str | os.PathLike, what: str) -> str:
    """``text`` when it is a local path. Where seqae reads and writes local folders only (the bundled
    datasets, validate's rejects, a training config file, the flows' registry and its drift state,
    whose lock is local), a URI is refused with one line, its credentials masked, before anything
    runs: never a local folder named ``s3:/KEY:SECRET@bucket``.

    Args:
        what: the option or argument, as the message names it (``"--out of seqae datasets"``).

    Raises:
        ConfigError: ``text`` is a URI.
    """
    text = os.fspath(text)
    if has_uri_scheme(text) or "://" in text:
        raise ConfigError(f"{redact_uri(text)}: {what} takes a local path; expected a local path, found a URI "
                          "(object stores are not supported there yet)")
    return text


#: Characters that make a path a glob (as ``seqae.data.resolve_shards`` reads it).
GLOB_CHARS = "*?["


def _lexical_place(text: str) -> tuple[str, str]:
    """``(filesystem kind, path)`` of a local path or URI without touching any filesystem: ``local``
    for plain paths and ``file://`` URIs (absolute), else the scheme; query and fragment dropped."""
    if not has_uri_scheme(text):
        return "local", os.path.abspath(os.path.expanduser(text))
    scheme, rest = text.split("://", 1)
    rest = urllib.parse.unquote(re.split(r"[?#]", rest, maxsplit=1)[0])  # pyarrow decodes %2e%2e too
    if scheme.lower() == "file":
        return "local", rest or "/"
    return scheme.lower(), "/" + rest.lstrip("/")


def within(where: str | os.PathLike, root: str | os.PathLike) -> Location:
    """``where`` as a ``Location``, when it lies inside ``root`` (a folder, a file or a glob, as the
    embed flow's ``data``). Decided on the text first, before anything is opened, so that a path
    from outside (an event) cannot probe what the worker's credentials can reach: no ``..``, no
    wildcard, the same filesystem, under the fixed part of ``root``. A local path must also stay
    inside after its symbolic links are resolved (``realpath``, which opens no file).

    Raises:
        SeqaeError: credentials in either, or ``where`` is not inside ``root``; one line, masked.
    """
    where, root = os.fspath(where), os.fspath(root)
    refuse_credentials(where)
    refuse_credentials(root)
    shown, shown_root = redact_uri(where), redact_uri(root)
    kind, path = _lexical_place(where)
    if ".." in re.split(r"[/\\]", where) or ".." in path.split("/"):
        raise SeqaeError(f"{shown}: '..' is refused in a path that must lie inside the data root {shown_root}; "
                         "expected a path under it, found one that climbs out")
    if any(c in where for c in GLOB_CHARS):
        raise SeqaeError(f"{shown}: expected one file inside the data root {shown_root}, found a wildcard")
    root_kind, root_path = _lexical_place(root)
    fixed = []
    for part in posixpath.normpath(root_path).split("/"):
        if any(c in part for c in GLOB_CHARS):
            break
        fixed.append(part)
    base = "/".join(fixed).rstrip("/") or "/"
    path = posixpath.normpath(path)

    def inside(child: str, parent: str) -> bool:
        return child == parent or child.startswith(parent.rstrip("/") + "/")

    if kind != root_kind or not inside(path, base):
        raise SeqaeError(f"{shown}: not inside the data root {shown_root}; expected a path under {redact_uri(base)}")
    location = Location.of(where)
    if location.is_local and not inside(os.path.realpath(location.path), os.path.realpath(base)):
        raise SeqaeError(f"{shown}: leads out of the data root {shown_root} through a symbolic link; expected "
                         "a file inside it")
    return location


def has_magic(location: Location, magic: bytes) -> bool:
    """Whether the file begins and ends with ``magic`` (Parquet: ``b"PAR1"`` at both ends)."""
    with location.filesystem.open_input_file(location.path) as file:
        size = file.size()
        if size < 2 * len(magic):
            return False
        head = file.read(len(magic))
        file.seek(size - len(magic))
        return head == magic and file.read(len(magic)) == magic


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
        refuse_credentials(text)  # also what has_uri_scheme does not take for a URI (" s3://K:S@b")
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


_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}" + re.escape(names.TMP_SUFFIX) + "$", re.DOTALL)


def is_temporary(name: str) -> bool:
    """A name ``Location.temporary`` makes (``.<name>.<8 hex>.tmp``): left behind only by a writer that
    was killed. Other hidden files (a user's ``.notes.tmp``) are not ours and stay."""
    return _TEMPORARY.match(name) is not None


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
        file.commit()
    except OSError as exc:  # a full disk, a lost connection: name the file the user asked for
        file.abort()
        raise write_error(file.target, exc) from exc
    except BaseException:
        file.abort()
        raise


def write_error(target: Location, exc: OSError) -> OSError:
    """``exc`` as one line naming ``target`` and the system's words (``[Errno 28] No space left on
    device``), still an ``OSError`` with its ``errno`` (a retry may help a network store; the
    temporary file's name would not help anyone)."""
    reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno and exc.strerror else " ".join(str(exc).split())
    error = OSError(f"{target}: cannot write this file: {reason}")
    error.errno = exc.errno
    return error


@contextlib.contextmanager
def replace_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Fill a local folder under a temporary name beside ``target``, then swap it into place.

    A crash leaves the old folder or the new one, never a half-written one; the temporary folder
    is removed when the block fails. Each writer holds an exclusive lock on ``.<name>.<id>.lock``
    (opened with ``O_NOFOLLOW``) while its temporaries ``.<name>.<id>.tmp`` (the new folder) and
    ``.<name>.<id>.old.tmp`` (the folder it replaces) exist; a temporary is removed only when its lock
    can be taken, that is when the writer that made it is gone (the kernel drops a dead process's
    locks), never while another writer is filling it. The previous folder left aside by a writer
    killed between the two renames is kept while ``target`` is missing (it is then the only copy).
    Temporaries without a lock file (written before seqae locked them) are left alone.
    """
    import fcntl

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    prefix = f".{target.name}."
    for lock_path in target.parent.glob(f"{glob.escape(prefix)}*.lock"):
        try:
            fd = os.open(lock_path, flags)
        except OSError:  # gone meanwhile, or not a plain file (a symlink is never followed)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            stem = lock_path.name[: -len(".lock")]
            old, new = target.parent / f"{stem}.old{names.TMP_SUFFIX}", target.parent / f"{stem}{names.TMP_SUFFIX}"
            if old.is_dir() and not os.path.lexists(target):
                continue  # killed between the two renames: the previous folder is the only copy, keep it
            for stale in (old, new):
                if stale.is_dir() and not stale.is_symlink():
                    shutil.rmtree(stale, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
        finally:
            os.close(fd)
    stem = f"{prefix}{uuid.uuid4().hex[:8]}"
    lock_path = target.parent / f"{stem}.lock"
    fd = os.open(lock_path, flags | os.O_CREAT | os.O_EXCL, 0o644)
    tmp, old = target.parent / f"{stem}{names.TMP_SUFFIX}", target.parent / f"{stem}.old{names.TMP_SUFFIX}"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        tmp.mkdir()
        try:
            yield tmp
            moved = False
            if target.exists():
                os.replace(target, old)
                moved = True
            os.replace(tmp, target)
            if moved:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


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
