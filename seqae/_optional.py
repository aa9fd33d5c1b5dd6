"""Optional dependencies announce themselves (alibi-detect's ``import_optional``).

The core install (``pip install seqae``) is the inference path. TensorFlow, Keras, tf2onnx, onnx,
onnxconverter-common and matplotlib come with the ``train`` extra, Prefect with ``flows``, Ray with
``ray``. A module that needs one imports it inside the function that needs it, through
``import_optional``, so that importing the module never fails and the first call says which
``pip install`` to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from seqae.errors import SeqaeError

#: The extras of ``pyproject.toml`` an optional package can come from.
EXTRAS = ("train", "flows", "ray")


class MissingDependencyError(SeqaeError, ModuleNotFoundError):
    """A package of an optional extra is not installed; the message names the ``pip install`` to run.

    Also a ``ModuleNotFoundError`` (so an ``ImportError``): code that already catches those still does.
    ``name`` is the package that could not be imported, ``extra`` the extra that installs it.
    """

    def __init__(self, message: str, *, name: str | None = None, extra: str | None = None):
        super().__init__(message, name=name)
        self.extra = extra

    def __reduce__(self):
        # ImportError pickles its keyword arguments as state, which a subclass's __init__ does not take.
        return _rebuild, (str(self), self.name, self.extra)


def _rebuild(message: str, name: str | None, extra: str | None) -> MissingDependencyError:
    return MissingDependencyError(message, name=name, extra=extra)


def missing_message(module: str, extra: str, *, missing: str | None = None, needed_for: str | None = None) -> str:
    """The one message of a missing optional dependency (tests assert it exactly)."""
    who = needed_for or "this"
    if missing in (None, module):
        found = f"{who} needs {module}, which is not installed"
    else:
        found = f"{who} needs {module}, which cannot be imported: {missing} is not installed"
    return f"{found}; install the '{extra}' extra: pip install 'seqae[{extra}]'"


def import_optional(module: str, extra: str, *, needed_for: str | None = None) -> ModuleType:
    """Import ``module`` from an optional extra, or say which ``pip install`` brings it.

    Only a missing package becomes ``MissingDependencyError``: any other ``ImportError`` (a broken
    CUDA library, a version conflict) propagates unchanged, because installing the extra again
    would not fix it.

    Args:
        module: the module to import, e.g. ``"tensorflow"`` or ``"tf2onnx"``.
        extra: the extra of ``pyproject.toml`` that installs it, one of ``EXTRAS``.
        needed_for: what needs it, for the message, e.g. ``"seqae.train"``.

    Returns:
        The imported module.

    Raises:
        ValueError: ``extra`` is not one of ``EXTRAS`` (a programming error).
        MissingDependencyError: ``module``, or a package it imports, is not installed.
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra: expected one of {', '.join(EXTRAS)}, got {extra!r}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or module
        raise MissingDependencyError(missing_message(module, extra, missing=missing, needed_for=needed_for),
                                     name=missing, extra=extra) from exc
