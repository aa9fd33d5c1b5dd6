"""Every seqae config, importable without TensorFlow: frozen dataclasses that validate on arrival
(the received value in the message), round-trip through ``to_dict``/``from_dict`` and refuse unknown
keys. The inference image reads a model directory into these, never into raw dicts.

``DataConfig`` (the input contract) lives in ``seqae.data.config`` and is re-exported here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from seqae import names
from seqae.configbase import (
    Config,
    check_choice,
    check_positive,
    check_positive_number,
    check_range,
)
from seqae.data.config import DataConfig
from seqae.data.filters import RowFilter
from seqae.errors import ConfigError

Mode = Literal["reconstruct", "predict", "composite"]
DecoderKind = Literal["unconditioned", "state", "conditioned"]
Device = Literal["auto", "cuda", "cpu"]
ValidationSplit = Literal["auto", "key", "time"]

__all__ = ["DataConfig", "EmbedConfig", "ExportConfig", "ModelConfig", "SessionOptions", "TrainConfig",
           "load_config_file"]


@dataclass(frozen=True)
class ModelConfig(Config):
    """Hyperparameters of one autoencoder.

    Args:
        num_features: features per time step; ``None`` until training takes it from the data.
        mode: ``reconstruct`` the input, ``predict`` the next ``horizon`` steps, or ``composite``
            (both decoders on one encoder, losses summed with ``predict_weight``).
        horizon: steps predicted after the input (predict and composite modes). The last
            ``horizon`` steps of each sequence are the target; the encoder reads the rest.
        reverse_target: reconstruct in reverse order (the paper's choice).
        decoder: ``unconditioned`` (the embedding repeated at every step), ``state`` (the embedding
            sets the decoder's initial state and it receives no input: the paper's unconditioned
            decoder, about a third less decoder work) or ``conditioned`` (state from the embedding, and
            fed the previous target step: teacher forcing in training, its own output when scoring).
        units: LSTM units per layer.
        latent_dim: embedding size; ``None`` uses the last encoder layer's state (``units``),
            smaller values add a linear bottleneck.
        num_layers: stacked LSTM layers in the encoder and in each decoder.
        dropout: dropout between stacked layers and on the embedding, in training only.
        activation: LSTM activation. ``tanh`` keeps the cuDNN and ONNX CUDA paths; ``relu`` is
            available (as in the Keras tutorial) and then relies on gradient clipping.
        learning_rate: Adam learning rate (3e-3 with the default batch of 64).
        clipnorm: gradient clipping by global norm; ``None`` disables it.
        predict_weight: weight of the prediction loss in composite mode.
    """

    num_features: int | None = None
    mode: Mode = "reconstruct"
    horizon: int = 0
    reverse_target: bool = True
    decoder: DecoderKind = "unconditioned"
    units: int = 64
    latent_dim: int | None = None
    num_layers: int = 1
    dropout: float = 0.0
    activation: Literal["tanh", "relu"] = "tanh"
    learning_rate: float = 3e-3
    clipnorm: float | None = 1.0
    predict_weight: float = 1.0

    def __post_init__(self) -> None:
        check_positive("num_features", self.num_features, allow_none=True)
        for name in ("units", "num_layers"):
            check_positive(name, getattr(self, name))
        check_choice("mode", self.mode, ("reconstruct", "predict", "composite"))
        check_choice("decoder", self.decoder, ("unconditioned", "state", "conditioned"))
        check_choice("activation", self.activation, ("tanh", "relu"))
        if self.mode == "reconstruct":
            if self.horizon != 0:
                raise ConfigError(f"horizon: the reconstruct mode predicts nothing; expected 0, got {self.horizon}")
        elif not isinstance(self.horizon, int) or isinstance(self.horizon, bool) or self.horizon < 1:
            raise ConfigError(f"horizon: the {self.mode} mode needs a positive integer, got {self.horizon!r}")
        check_positive("latent_dim", self.latent_dim, allow_none=True)
        check_range("dropout", self.dropout, 0.0, 1.0)
        check_positive_number("learning_rate", self.learning_rate)
        check_positive_number("clipnorm", self.clipnorm, allow_none=True)
        check_positive_number("predict_weight", self.predict_weight)

    @property
    def embedding_dim(self) -> int:
        return self.latent_dim or self.units

    @property
    def reconstructs(self) -> bool:
        return self.mode in ("reconstruct", "composite")

    @property
    def predicts(self) -> bool:
        return self.mode in ("predict", "composite")

    @property
    def min_length(self) -> int:
        """Shortest usable sequence: one step to encode plus the predicted horizon."""
        return 1 + self.horizon

    @property
    def output_names(self) -> list[str]:
        """The scorer's outputs, in the order the graph has them."""
        out = [names.EMBEDDING, names.RECON_ERROR, names.STEP_ERROR]
        return out + [names.PRED_ERROR] if self.predicts else out


@dataclass(frozen=True)
class TrainConfig(Config):
    """How to fit.

    Args:
        batch_size: sequences per gradient step. On the CPU a step of 64 rows costs much less than two
            of 32, so an epoch runs more rows per second; ``ModelConfig.learning_rate`` is set for 64
            (docs/benchmarks.md has the measurements).
        max_epochs: upper bound; early stopping on the validation loss decides the real number.
        patience: epochs without improvement (by ``min_delta``) before stopping; the best weights are restored.
        lr_patience: epochs without improvement before the learning rate is halved (down to 1e-5).
            The validation loss falls in steps at each halving, so halving soon ends training in fewer
            epochs (docs/benchmarks.md).
        min_delta: smallest validation-loss decrease that counts as improvement.
        validation_fraction: share held out for validation (early stopping, the learning-rate schedule,
            and the threshold and drift reference).
        validation_split: how it is held out. ``key``: by a seeded hash of the key (a sequence, or a
            whole series in the long layout). ``time`` (long layout): the last ``validation_fraction``
            of each series' windows, after a gap that drops the windows overlapping them, so that no
            time step is in both splits. ``auto``: ``key`` for the sequence layout; for the long layout
            ``key`` when at least ``2 / validation_fraction`` series are there to hold out, else ``time``.
        row_filter: train on matching rows only, e.g. ``"label == 1"``.
        seed: seeds the split, shuffling and weight initialisation.
        shuffle: shuffle the training rows each epoch: all of them when cached, else the shard order and
            blocks of ``shuffle_buffer`` rows.
        shuffle_buffer: rows shuffled together when streaming.
        read_batch_size: rows per Parquet record batch.
        cache_mb: keep the decoded rows of both splits in memory after the first pass when they fit in
            this many MiB (float32, padded to the longest row; the end of the first pass briefly holds
            twice that while it joins the pieces); each epoch then reads no Parquet. 0 streams from the
            shards every epoch.
    """

    batch_size: int = 64
    max_epochs: int = 300
    patience: int = 6
    lr_patience: int = 2
    min_delta: float = 1e-3
    validation_fraction: float = 0.1
    validation_split: ValidationSplit = "auto"
    row_filter: str | None = None
    seed: int = 0
    shuffle: bool = True
    shuffle_buffer: int = 10_000
    read_batch_size: int = 4096
    cache_mb: int = 1024

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience", "lr_patience", "shuffle_buffer", "read_batch_size"):
            check_positive(name, getattr(self, name))
        if not isinstance(self.cache_mb, int) or self.cache_mb < 0:
            raise ConfigError(f"cache_mb: expected an integer >= 0, got {self.cache_mb!r}")
        check_range("validation_fraction", self.validation_fraction, 0.0, 1.0)
        check_choice("validation_split", self.validation_split, ("auto", "key", "time"))
        if not isinstance(self.min_delta, (int, float)) or self.min_delta < 0:
            raise ConfigError(f"min_delta: expected a number >= 0, got {self.min_delta!r}")
        if self.row_filter is not None:
            RowFilter.parse(self.row_filter)


@dataclass(frozen=True)
class ExportConfig(Config):
    """How to export and how strict the parity gate is.

    Args:
        opset: ONNX opset (13 to 18, tested with tf2onnx 1.17).
        fp16: also write ``scorer.fp16.onnx`` (CUDA serving).
        parity_rows: real rows the gate compares (also cut to random lengths).
        embedding_atol: absolute, per embedding value.
        error_rtol: relative, per sequence, on ``recon_error`` and ``pred_error``.
        step_error_rtol: relative to the largest step error of the same sequence, per step (an
            elementwise relative bound means nothing for steps whose error is near zero; two float32
            LSTM implementations drift by about 1e-4 of the signal over 140 steps).
        error_atol_floor: absolute floor on all errors.
        int8: also write ``scorer.int8.onnx``: LSTM and MatMul weights quantized to int8 with
            onnxruntime's dynamic quantization (activations quantized per call), for the CPU. It is
            kept only if it passes its own parity against the fp32 scorer:
        int8_embedding_atol: absolute, per embedding value;
        int8_error_rtol: relative, per sequence, on the errors: the median over the parity rows;
        int8_error_rtol_p99: the same, the 99th percentile.
    """

    opset: int = 17
    fp16: bool = False
    int8: bool = False
    parity_rows: int = 256
    embedding_atol: float = 1e-4
    error_rtol: float = 1e-4
    step_error_rtol: float = 1e-3
    error_atol_floor: float = 1e-6
    int8_embedding_atol: float = 2e-2
    int8_error_rtol: float = 1e-2
    int8_error_rtol_p99: float = 5e-2

    def __post_init__(self) -> None:
        if not isinstance(self.opset, int) or not 13 <= self.opset <= 18:
            raise ConfigError(f"opset: expected 13 to 18 (tested with tf2onnx 1.17), got {self.opset!r}")
        check_positive("parity_rows", self.parity_rows)
        for name in ("embedding_atol", "error_rtol", "step_error_rtol", "error_atol_floor", "int8_embedding_atol",
                     "int8_error_rtol", "int8_error_rtol_p99"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name}: expected a number >= 0, got {value!r}")


@dataclass(frozen=True)
class SessionOptions(Config):
    """How the onnxruntime session runs.

    Args:
        device: ``cuda`` fails unless the CUDA provider really runs; ``auto`` uses CUDA when it
            does and otherwise the CPU, with a warning; ``cpu`` never touches CUDA.
        fp16: use ``scorer.fp16.onnx`` (CUDA only: an fp16 LSTM crashed the CPU provider).
        threads: CPU intra-op threads; ``None`` = the cores this process may use.
        allow_cpu_nodes: on CUDA, warn instead of failing when a heavy node runs on the CPU.
        int8: use ``scorer.int8.onnx`` (``seqae export --int8``), on the CPU provider (``auto`` then
            means the CPU).
    """

    device: Device = "auto"
    fp16: bool = False
    threads: int | None = None
    allow_cpu_nodes: bool = False
    int8: bool = False

    def __post_init__(self) -> None:
        check_choice("device", self.device, ("auto", "cuda", "cpu"))
        if self.fp16 and self.device == "cpu":
            raise ConfigError("fp16: the fp16 scorer runs on CUDA only (an fp16 LSTM crashed onnxruntime's "
                              "CPU provider); drop --fp16 or use --device cuda")
        if self.int8 and (self.fp16 or self.device == "cuda"):
            raise ConfigError("int8: the int8 scorer runs on the CPU provider; drop --fp16 / --device cuda")
        check_positive("threads", self.threads, allow_none=True)

    @property
    def scorer_file(self) -> str:
        """The scorer these options run: fp32, fp16 (CUDA) or int8 (CPU)."""
        return names.SCORER_FP16_ONNX if self.fp16 else names.SCORER_INT8_ONNX if self.int8 else names.SCORER_ONNX


@dataclass(frozen=True)
class EmbedConfig(Config):
    """Options of one embed run.

    Memory: at most ``read_batch_size x workers x 3`` rows are decoded at once (per worker: 2 batches
    submitted to the scorer ahead, one being written; ``queue_size`` of those wait for the scorer),
    each ``time x features x 4`` bytes padded, plus their outputs.

    Args:
        device: ``auto``, ``cuda`` or ``cpu`` (see ``SessionOptions``).
        fp16: use the fp16 scorer (CUDA only).
        int8: use the int8 scorer (CPU only; ``seqae export --int8`` writes it).
        batch_size: sequences per inference call; ``None`` picks per device.
        read_batch_size: rows per Parquet record batch (memory per queue slot).
        queue_size: read batches waiting for the scorer (memory bound with ``read_batch_size``).
        workers: shards read, decoded and written at once, each by its own thread (pyarrow and
            numpy release the GIL); ``None`` = the cores this process may use, at most 8.
        threads: CPU intra-op threads for onnxruntime.
        step_errors: also write ``step_error`` (one error per valid step).
        step_scores: long layout: also write per-timestamp scores, one row per series and time step
            with the mean and max step error over the windows covering it (``_steps/<output>``).
        overwrite: recompute every shard, even those done.
        allow_cpu_nodes: on CUDA, warn instead of failing when a heavy node runs on the CPU.
        fail_fast: stop at the first input file that cannot be used as a whole; by default such a
            file is quarantined (recorded with its reason) and the other shards are processed.
    """

    device: Device = "auto"
    fp16: bool = False
    int8: bool = False
    batch_size: int | None = None
    read_batch_size: int = 16384
    queue_size: int = 4
    workers: int | None = None
    threads: int | None = None
    step_errors: bool = False
    step_scores: bool = False
    overwrite: bool = False
    allow_cpu_nodes: bool = False
    fail_fast: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers"):
            check_positive(name, getattr(self, name), allow_none=True)
        for name in ("read_batch_size", "queue_size"):
            check_positive(name, getattr(self, name))
        self.session_options  # validates device, fp16, threads

    @property
    def session_options(self) -> SessionOptions:
        return SessionOptions(self.device, self.fp16, self.threads, self.allow_cpu_nodes, self.int8)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def load_config_file(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read a JSON or TOML file with optional sections ``model``, ``data`` and ``train``.

    Returns the sections as dicts (command-line options are merged over them before the configs
    are built); unknown sections are refused here, unknown keys when the configs are built.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a valid config file (not UTF-8 text: byte {exc.start})") from exc
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError
        raise ConfigError(f"{path}: not a valid {'TOML' if path.suffix == '.toml' else 'JSON'} file ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected sections data, model, train; found a {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; expected some of data, model, train")
    return data
