"""The exceptions seqae raises: one base class, a few named kinds, fixed actionable messages."""

from __future__ import annotations


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
            msg += f". {hint}"
        super().__init__(msg)


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


def is_transient(exc: BaseException) -> bool:
    """Whether retrying might help: an operating-system or network I/O error that is not one of
    seqae's own (a missing input, a contract breach or a bad model directory never heals by itself)."""
    return isinstance(exc, (OSError, TimeoutError, ConnectionError)) and not isinstance(exc, SeqaeError)
