"""The exceptions seqae raises: one base class, a few named kinds, fixed actionable messages."""

from __future__ import annotations

import errno
import socket


class SeqaeError(Exception):
    """Base class of every error seqae raises on purpose."""


class ConfigError(SeqaeError, ValueError):
    """A configuration value or file is invalid (unknown key, out-of-range value, incompatible options)."""


class ContractError(SeqaeError, ValueError):
    """An input file breaks the data contract as a whole (missing column, wrong type, unreadable file).

    Row-level problems never raise: they go to the rejects output with a reason.
    """

    def __init__(self, path: str, problem: str, *, column: str | None = None,
                 expected: str | None = None, found: str | None = None, hint: str | None = None):
        self.path = path
        self.column = column
        self.expected = expected
        self.found = found
        parts = [f"{path}:"]
        if column is not None:
            parts.append(f"column '{column}':")
        parts.append(problem)
        msg = " ".join(parts)
        if expected is not None:
            msg += f"; expected {expected}"
        if found is not None:
            msg += f", found {found}"
        if hint:
            msg = f"{msg.rstrip('.')}. {hint}"
        self._fields = (path, problem, {"column": column, "expected": expected, "found": found, "hint": hint})
        super().__init__(msg)

    def __reduce__(self):
        # Worker processes send errors back pickled; the default would call __init__(message) alone.
        path, problem, keywords = self._fields
        return _rebuild, (type(self), (path, problem), keywords)


def _rebuild(cls, args, keywords):
    return cls(*args, **keywords)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace, newlines included, made one space (pyarrow's messages
    sometimes end in a newline or span several lines)."""
    return " ".join(str(text).split())


class CorruptFileError(ContractError):
    """A file's bytes are not valid Parquet: truncated, a bad magic number, a damaged footer or column
    metadata, a page that does not decompress or fails its checksum. Retrying cannot help; the file is
    quarantined like any other contract breach.

    Args:
        path: the file's URI.
        cause: what the Parquet decoder raised (or its message).
        where: the read that failed: ``"opening the footer"``, ``"reading rows from row 4096"``.
    """

    def __init__(self, path: str, cause: BaseException | str, *, where: str = "opening the footer"):
        self.where = where
        self.reason = one_line(f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else cause)
        super().__init__(path, f"cannot be read as Parquet ({where})", expected="a valid Parquet file",
                         found=self.reason,
                         hint="The file is damaged, truncated or not Parquet: write or copy it again from its source")
        self._fields = (path, self.reason, {"where": where})


class InputNotFoundError(SeqaeError, FileNotFoundError):
    """The input path, directory or glob matched no Parquet file."""


class ModelDirError(SeqaeError, ValueError):
    """A model directory is incomplete, tampered with, or from an incompatible version."""


class ChecksumError(ModelDirError):
    """A file in a model directory does not match the sha256 recorded in seqae.json."""


class ParityError(SeqaeError, ValueError):
    """Exported ONNX models disagree with the Keras model beyond the stated tolerance."""


class DeviceError(SeqaeError, RuntimeError):
    """The requested execution device is unavailable or would silently fall back."""


#: Words in the message of a plain ``OSError`` (pyarrow raises one for every I/O failure, S3 and GCS
#: included) that say the connection failed, not the file: curl's and AWS's, gRPC's, the socket's.
TRANSIENT_MARKERS = (
    "curlcode", "could not connect", "couldn't connect", "connection reset", "connection refused",
    "connection aborted", "connection closed", "broken pipe", "timed out", "timeout", "network_connection",
    "network is unreachable", "no route to host", "temporary failure in name resolution", "slowdown",
    "slow_down", "throttl", "service_unavailable", "http status 500", "http status 502", "http status 503",
    "http status 504", "internal_failure", "request_timeout", "unavailable:", "deadline_exceeded",
    "resource_exhausted", "failure when receiving data", "failure when sending data",
)
#: errno values of a network failure that Python raises as a plain ``OSError``.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENETUNREACH", "ENETDOWN", "ENETRESET", "EHOSTUNREACH", "EHOSTDOWN",
                                      "ETIMEDOUT", "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "EPIPE", "EAGAIN")
    if hasattr(errno, name)
)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying might help: a connection error or a timeout (``ConnectionError``,
    ``TimeoutError``, a socket error, pyarrow's ``OSError`` from S3 or GCS saying ``curlCode``,
    ``Could not connect``, ``timed out``, a 503 ``SlowDown``).

    Everything else is permanent: a file whose bytes are bad (pyarrow's ``ArrowInvalid`` or an
    ``OSError`` such as ``Corrupt snappy compressed data``), a missing or forbidden file, and seqae's
    own errors (a contract breach or a bad model directory never heals by itself).
    """
    if isinstance(exc, SeqaeError) or not isinstance(exc, OSError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, socket.herror, socket.gaierror)):
        return True
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                        FileExistsError)):
        return False
    if exc.errno in TRANSIENT_ERRNOS:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in TRANSIENT_MARKERS)
