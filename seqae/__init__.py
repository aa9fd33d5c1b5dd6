"""seqae: LSTM sequence autoencoders trained on Parquet, exported to ONNX, served by batch jobs.

The public API is this package's namespace: ``seqae.train``, ``seqae.export``, ``seqae.embed``,
``seqae.embed_shard``, ``seqae.fit_threshold``, ``seqae.evaluate``, ``seqae.drift``, the configs,
``InferenceModel``, ``ModelRegistry``, ``SeqaeError`` and ``__version__``. Names are imported on first
use (PEP 562), so ``import seqae`` stays cheap and the inference install (no TensorFlow, no Prefect)
imports neither; a function that needs an extra says which ``pip install`` to run when it is called.

``seqae.train``, ``seqae.export``, ``seqae.evaluate`` and ``seqae.drift`` are the functions, not the
modules of the same names: reach those through ``from seqae.train import ...`` or ``importlib.import_module``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types
from typing import TYPE_CHECKING, Any

from seqae._version import __version__

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports these on first use
    from seqae._optional import MissingDependencyError
    from seqae.anomaly import drift, fit_threshold
    from seqae.config import EmbedConfig, ExportConfig, ModelConfig, SessionOptions, TrainConfig
    from seqae.data.config import DataConfig
    from seqae.errors import SeqaeError
    from seqae.evaluate import evaluate
    from seqae.export import ExportResult, export
    from seqae.infer import EmbedReport, InferenceModel, ShardResult, embed, embed_shard
    from seqae.registry import ModelRegistry
    from seqae.thresholds import Threshold, ThresholdConfig
    from seqae.train import TrainResult, train

#: Each public name and the module that defines it (the same imports as the TYPE_CHECKING block above).
_LAZY: dict[str, str] = {
    # the pipeline: one function per `seqae` subcommand
    "train": "seqae.train",
    "export": "seqae.export",
    "embed": "seqae.infer",
    "embed_shard": "seqae.infer",
    "fit_threshold": "seqae.anomaly",
    "evaluate": "seqae.evaluate",
    "drift": "seqae.anomaly",
    # the configs
    "ModelConfig": "seqae.config",
    "DataConfig": "seqae.data.config",
    "TrainConfig": "seqae.config",
    "ExportConfig": "seqae.config",
    "EmbedConfig": "seqae.config",
    "SessionOptions": "seqae.config",
    "ThresholdConfig": "seqae.thresholds",
    # what the functions return, and what serves a model
    "TrainResult": "seqae.train",
    "ExportResult": "seqae.export",
    "EmbedReport": "seqae.infer",
    "ShardResult": "seqae.infer",
    "Threshold": "seqae.thresholds",
    "InferenceModel": "seqae.infer",
    "ModelRegistry": "seqae.registry",
    # errors
    "SeqaeError": "seqae.errors",
    "MissingDependencyError": "seqae._optional",
}

#: Public names that are also submodules of the package: the function is what ``seqae.<name>`` means.
_SHADOWED = frozenset(_LAZY) & frozenset(info.name for info in pkgutil.iter_modules(__path__))

__all__ = [
    "DataConfig", "EmbedConfig", "EmbedReport", "ExportConfig", "ExportResult", "InferenceModel", "MissingDependencyError",
    "ModelConfig", "ModelRegistry", "SeqaeError", "SessionOptions", "ShardResult", "Threshold", "ThresholdConfig",
    "TrainConfig", "TrainResult", "__version__", "drift", "embed", "embed_shard", "evaluate", "export",
    "fit_threshold", "load_model", "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup finds it without calling __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The ``seqae`` module's type. Importing the submodule ``seqae.train`` makes the import system
    set the attribute ``seqae.train`` to that module; without this guard, ``seqae.train`` would be the
    function or the module depending on which was touched first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def load_model(model_dir):
    """Load a trained model directory: the Keras model, its encoder and the metadata.

    Kept for backward compatibility; the same as ``seqae.model.load_model``. Needs the ``train``
    extra (TensorFlow).

    Raises:
        MissingDependencyError: TensorFlow or Keras is not installed (``pip install 'seqae[train]'``).
    """
    from seqae._optional import import_optional

    for module in ("tensorflow", "keras"):
        import_optional(module, "train", needed_for="seqae.load_model")
    from seqae.model import load_model as _load

    return _load(model_dir)
