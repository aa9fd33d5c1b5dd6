"""Every seqae config, importable without TensorFlow: frozen dataclasses that validate on arrival
(the received value in the message), round-trip through ``to_dict``/``from_dict`` and refuse unknown
keys. The inference image reads a model directory into these, never into raw dicts.

``DataConfig`` (the input contract) lives in ``seqae.data.config`` and is re-exported here.

This module is the one place of every choice (a ``Literal``: the check and the command line's
choices read it), default and command-line help (``configbase.option``): ``seqae.cli`` binds its
options from these fields and writes none of them again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from seqae import names
from seqae.configbase import (
    Config,
    check_choice,
    check_positive,
    check_positive_number,
    check_range,
    option,
)
from seqae.data.config import DataConfig
from seqae.data.filters import RowFilter
from seqae.errors import ConfigError

Mode = Literal["reconstruct", "predict", "composite"]
DecoderKind = Literal["unconditioned", "state", "conditioned"]
Device = Literal["auto", "cuda", "cpu"]
ValidationSplit = Literal["auto", "key", "time"]
Activation = Literal["tanh", "relu"]
ThresholdMethod = Literal["auto", "percentile", "pot"]

__all__ = ["MODES", "DataConfig", "DecoderTask", "EmbedConfig", "ExportConfig", "ModeSpec", "ModelConfig",
           "SessionOptions", "ThresholdConfig", "TrainConfig", "load_config_file"]


# --- the model modes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecoderTask:
    """One decoder a mode trains: what it learns and the error output that is its loss term.

    Attributes:
        decoder: its layer in the Keras model, an attribute of ``seqae.model.AutoencoderHead`` of the
            same name (the saved weights are found under it: never rename one).
        target: ``input``: the encoded steps (in reverse with ``reverse_target``); ``future``: the
            ``horizon`` steps after them (the mode then needs ``horizon``).
        error: its per-sequence error output, one term of the training loss.
        weight: the ``ModelConfig`` field that weights that term; ``None``: 1.
    """

    decoder: str
    target: Literal["input", "future"]
    error: str
    weight: str | None = None


RECONSTRUCTION = DecoderTask("reconstructor", "input", names.RECON_ERROR)
PREDICTION = DecoderTask("predictor", "future", names.PRED_ERROR, weight="predict_weight")


@dataclass(frozen=True)
class ModeSpec:
    """What one mode trains, exports and writes: ``seqae.model``, ``seqae.export``, ``seqae.io`` and
    ``seqae.infer`` read it here and spell no mode themselves.

    Attributes:
        trains: its decoders, in the order the model runs them (their errors add up in ``step_error``).
        outputs: the Keras model's outputs and the scorer's ONNX outputs, in graph order. An error
            output that no decoder of the mode trains is zeros (``recon_error`` of ``predict``).
        columns: the model outputs ``seqae embed`` writes in every row (``seqae.io.OUTPUT_COLUMNS``
            says how each column is made and which are optional, such as ``step_error``).
    """

    trains: tuple[DecoderTask, ...]
    outputs: tuple[str, ...]
    columns: tuple[str, ...]

    @property
    def decoders(self) -> tuple[str, ...]:
        return tuple(task.decoder for task in self.trains)

    @property
    def reconstructs(self) -> bool:
        return any(task.target == "input" for task in self.trains)

    @property
    def predicts(self) -> bool:
        """A decoder learns the steps after the encoded ones: the mode needs a positive ``horizon``."""
        return any(task.target == "future" for task in self.trains)


_OUTPUTS = (names.EMBEDDING, names.RECON_ERROR, names.STEP_ERROR)

#: ``ModelConfig.patch=None`` fits the longest row training reads (either split) into this many LSTM steps (judged on the
#: ``make quality`` suite: 32 was no better on the two long outline sets, docs/benchmarks.md).
PATCH_STEPS = 64

#: One entry per ``Mode``, in its order (a test checks the two agree).
MODES: dict[str, ModeSpec] = {
    "reconstruct": ModeSpec(trains=(RECONSTRUCTION,), outputs=_OUTPUTS,
                            columns=(names.EMBEDDING, names.RECON_ERROR)),
    "predict": ModeSpec(trains=(PREDICTION,), outputs=(*_OUTPUTS, names.PRED_ERROR),
                        columns=(names.EMBEDDING, names.RECON_ERROR, names.PRED_ERROR)),
    "composite": ModeSpec(trains=(RECONSTRUCTION, PREDICTION), outputs=(*_OUTPUTS, names.PRED_ERROR),
                          columns=(names.EMBEDDING, names.RECON_ERROR, names.PRED_ERROR)),
}


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
        patch: time steps side by side in one LSTM step (a ``(time, features)`` row is read as
            ``(ceil(time / patch), patch * features)``; the decoders emit patches, and errors stay per
            time step). Long rows then take fewer LSTM steps: an LSTM's final state keeps the start of
            a short sequence better than that of a long one, and training is faster. ``None`` (the
            default): training chooses the smallest that fits the longest row it reads (the window in
            the long layout; validation rows included) into ``PATCH_STEPS`` (64) LSTM steps, and 1 in the modes that predict and
            with the conditioned decoder. Patches of more than one step need the ``reconstruct`` mode
            and a decoder that is not ``conditioned``.
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
    mode: Mode = option("reconstruct", "What the decoders learn.")
    horizon: int = option(0, "Steps to predict (predict, composite).")
    reverse_target: bool = option(True, "Reconstruct in reverse order.", flag="reverse")
    decoder: DecoderKind = option("unconditioned", "Decoder kind.")
    patch: int | None = option(None, "Time steps per LSTM step (default: fit the longest row into 64 LSTM steps).",
                               min=1)
    units: int = option(64, "LSTM units per layer.", min=1)
    latent_dim: int | None = option(None, "Embedding size (bottleneck).", min=1)
    num_layers: int = option(1, "Stacked LSTM layers.", flag="layers", min=1)
    dropout: float = option(0.0, "Dropout between layers.", min=0.0, max=0.99)
    activation: Activation = option("tanh", "LSTM activation (tanh keeps the GPU paths).")
    learning_rate: float = option(3e-3, "Adam learning rate.", min=0.0)
    clipnorm: float | None = 1.0
    predict_weight: float = 1.0

    def __post_init__(self) -> None:
        check_positive("num_features", self.num_features, allow_none=True)
        for name in ("units", "num_layers"):
            check_positive(name, getattr(self, name))
        check_choice("mode", self.mode, tuple(MODES))
        check_choice("decoder", self.decoder, DecoderKind)
        check_choice("activation", self.activation, Activation)
        if not self.mode_spec.predicts:
            if self.horizon != 0:
                raise ConfigError(f"horizon: the {self.mode} mode predicts nothing; expected 0, got {self.horizon}")
        elif not isinstance(self.horizon, int) or isinstance(self.horizon, bool) or self.horizon < 1:
            raise ConfigError(f"horizon: the {self.mode} mode needs a positive integer, got {self.horizon!r}")
        check_positive("latent_dim", self.latent_dim, allow_none=True)
        check_positive("patch", self.patch, allow_none=True)
        if (self.patch or 1) > 1 and self._one_step_only():
            raise ConfigError(f"patch: {self._one_step_only()}; expected 1 or None, got {self.patch}")
        check_range("dropout", self.dropout, 0.0, 1.0)
        check_positive_number("learning_rate", self.learning_rate)
        check_positive_number("clipnorm", self.clipnorm, allow_none=True)
        check_positive_number("predict_weight", self.predict_weight)

    @property
    def patch_size(self) -> int:
        """Time steps per LSTM step (``patch``; 1 until training resolves ``None``)."""
        return self.patch or 1

    def _one_step_only(self) -> str | None:
        """Why this member must read one time step per LSTM step, or ``None``."""
        if self.mode_spec.predicts:
            return f"the {self.mode} mode predicts steps one by one"
        if self.decoder == "conditioned":
            # Scoring, it would feed its own output back, padded slots of the last patch included, where
            # training fed zeros: errors would depend on length % patch.
            return "the conditioned decoder feeds back one step at a time"
        return None

    def resolve_patch(self, longest: int) -> ModelConfig:
        """This config with ``patch`` chosen for rows of at most ``longest`` steps when it is ``None``."""
        if self.patch is not None:
            return self
        size = 1 if self._one_step_only() else max(1, -(-longest // PATCH_STEPS))
        return dataclasses.replace(self, patch=size)

    @property
    def embedding_dim(self) -> int:
        return self.latent_dim or self.units

    @property
    def mode_spec(self) -> ModeSpec:
        """What this mode trains, exports and writes (``MODES``)."""
        return MODES[self.mode]

    @property
    def reconstructs(self) -> bool:
        return self.mode_spec.reconstructs

    @property
    def predicts(self) -> bool:
        return self.mode_spec.predicts

    @property
    def min_length(self) -> int:
        """Shortest usable sequence: one step to encode plus the predicted horizon."""
        return 1 + self.horizon

    @property
    def output_names(self) -> list[str]:
        """The scorer's outputs, in the order the graph has them."""
        return list(self.mode_spec.outputs)


@dataclass(frozen=True)
class TrainConfig(Config):
    """How to fit. The budget is counted in optimizer steps, not epochs, so that 40 rows and 40,000
    get comparable optimisation (docs/models.md, "Training recipe").

    Args:
        batch_size: sequences per gradient step.
        max_epochs: upper bound on epochs; early stopping may end sooner, and it wins over
            ``min_steps`` (a quick run with ``max_epochs=1`` stays quick).
        patience: optimizer steps without improvement (by ``min_delta``) before stopping, once
            ``min_steps`` are done; the best weights are restored. The validation loss is evaluated
            at the end of each epoch, so training stops at the first epoch end past this many steps.
        lr_patience: optimizer steps without improvement (or since the last halving) before the
            learning rate is halved, down to ``min_learning_rate``.
        min_steps: optimizer steps trained before early stopping may stop (a small data set takes
            many epochs to get there).
        min_epoch_steps: an epoch is one pass over the training rows, or as many steps as this when
            one pass is shorter (the data then flows on into the next pass): the validation loss of
            a set of 40 rows is evaluated every ``min_epoch_steps`` steps, not after every step.
        warmup_steps: the learning rate rises linearly from 0 over this many first steps (0: none).
        ema: keep an exponential moving average of the weights with this momentum (Polyak averaging,
            Keras' ``use_ema``; 0.99 averages over about the last 100 steps): validation, the restored
            best weights and the saved model use the averaged weights. ``None``: off.
        min_learning_rate: the floor of the halvings.
        min_delta: smallest relative decrease of the monitored loss that counts as improvement
            (1e-3: 0.1%), the same on every data set whatever the scale of its loss.
        validation_fraction: share held out for validation (early stopping, the learning-rate schedule,
            and the threshold and drift reference).
        min_validation_rows: held-out rows (windows in the long layout) the validation loss needs
            before early stopping and the learning-rate schedule watch it; with fewer, they watch the
            training loss, and the held-out rows stay the threshold and drift reference: the loss of a
            few rows picks the epoch to keep by chance (the figures: docs/benchmarks.md). With ``ema``,
            the training loss is the raw weights' and the averaged weights of the chosen epoch are kept.
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

    batch_size: int = option(64, "Sequences per step.", min=1)
    max_epochs: int = option(300, "Most epochs; early stopping may end sooner.", flag="epochs", min=1)
    patience: int = option(1000, "Optimizer steps without improvement before stopping (after --min-steps).", min=1)
    lr_patience: int = option(100, "Optimizer steps without improvement before the learning rate is halved.", min=1)
    min_steps: int = option(1000, "Optimizer steps trained before early stopping may stop.", min=0)
    min_epoch_steps: int = 20
    warmup_steps: int = option(0, "Steps over which the learning rate rises linearly from 0.", min=0)
    ema: float | None = option(None, "Average the weights with this momentum (e.g. 0.99); validate and keep the "
                                     "average.", min=0.0, max=0.9999)
    min_learning_rate: float = 1e-5
    min_delta: float = 1e-3
    validation_fraction: float = option(0.1, "Share held out for validation.", min=0.0, max=0.99)
    min_validation_rows: int = option(64, "Held-out rows needed to stop on the validation loss (fewer: the "
                                          "training loss).", min=1)
    validation_split: ValidationSplit = option(
        "auto", "key: whole keys (series) by a seeded hash; time: the end of each series (long layout); auto: time "
        "for the long layout with few series, else key.")
    row_filter: str | None = option(None, 'Train on matching rows, e.g. "label == 1".', flag="filter")
    seed: int = option(0, "Seed for split, shuffling and initialisation.")
    shuffle: bool = True
    shuffle_buffer: int = 10_000
    read_batch_size: int = 4096
    cache_mb: int = option(1024, "Keep the decoded rows in memory when they fit this many MiB (0: read the shards "
                                 "every epoch).", min=0)

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience", "lr_patience", "min_epoch_steps", "min_validation_rows",
                     "shuffle_buffer", "read_batch_size"):
            check_positive(name, getattr(self, name))
        for name in ("min_steps", "warmup_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name}: expected an integer >= 0 (optimizer steps), got {value!r}")
        check_positive_number("min_learning_rate", self.min_learning_rate)
        if self.ema is not None:
            check_range("ema", self.ema, 0.0, 1.0)
        if not isinstance(self.cache_mb, int) or self.cache_mb < 0:
            raise ConfigError(f"cache_mb: expected an integer >= 0, got {self.cache_mb!r}")
        check_range("validation_fraction", self.validation_fraction, 0.0, 1.0)
        check_choice("validation_split", self.validation_split, ValidationSplit)
        if not isinstance(self.min_delta, (int, float)) or self.min_delta < 0:
            raise ConfigError(f"min_delta: expected a relative decrease >= 0, got {self.min_delta!r}")
        if self.min_delta >= 1:
            raise ConfigError(f"min_delta: a relative decrease (1e-3 is 0.1%) must be below 1, got {self.min_delta!r}")
        if self.row_filter is not None:
            RowFilter.parse(self.row_filter)


@dataclass(frozen=True)
class ExportConfig(Config):
    """How to export and how strict the parity gate is.

    Args:
        opset: ONNX opset (13 to 18, tested with tf2onnx 1.17).
        fp16: also write ``scorer.fp16.onnx`` (CUDA serving), kept only if it passes its own parity
            against the fp32 scorer, run by ONNX's reference evaluator on the CPU (64 parity rows;
            ``seqae embed --device cuda --fp16`` measures CUDA's kernels); bounds below.
        parity_rows: real rows the gate compares (also cut to random lengths).
        embedding_atol: absolute, per embedding value.
        error_rtol: relative, per sequence, on ``recon_error`` and ``pred_error`` (the same bound as on
            the steps: 1e-4 failed a trained ECG5000 model by chance, docs/export.md).
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
        fp16_embedding_atol, fp16_error_rtol, fp16_error_rtol_p99: the fp16 scorer's bounds, as the
            int8 ones (on an H200, fp16 moved embeddings by at most 8e-4 and errors by 0.1%).
        neighbours: long layout: also write ``neighbours.onnx``, every full window of the training
            data at stride 1 (``seqae.baseline``), so that ``seqae embed`` writes each window's
            ``nearest_distance`` and each step's ``window_distance_min``, the step score; and
            ``neighbours.parquet``, the training windows against the bank without the windows that
            overlap each one, which ``seqae
            threshold`` fits the step threshold on. Its parity against float64 is checked with
            ``error_rtol``.
        neighbours_max_windows: the bank's windows at most (0: as many as fit in 256 MiB with their
            per-step norms, about 119,000 windows of 140 steps of one feature).
    """

    opset: int = option(17, "ONNX opset.", min=13, max=18)
    fp16: bool = option(False, "Also write scorer.fp16.onnx for GPU serving.")
    int8: bool = option(False, "Also write scorer.int8.onnx (dynamic int8 weights, CPU), kept if it passes its "
                               "parity.")
    neighbours: bool = option(True, "Long layout: also write neighbours.onnx, a bank of the training windows; steps "
                                    "are scored by the distance to the nearest one.")
    neighbours_max_windows: int = option(0, "Long layout: windows in the bank at most, thinned evenly (0: as many as "
                                            "fit in 256 MiB).", min=0)
    parity_rows: int = 256
    embedding_atol: float = option(1e-4, "Parity: absolute tolerance on embeddings.", min=0.0)
    error_rtol: float = option(1e-3, "Parity: relative tolerance on errors.", min=0.0)
    step_error_rtol: float = 1e-3
    error_atol_floor: float = 1e-6
    int8_embedding_atol: float = 2e-2
    int8_error_rtol: float = 1e-2
    int8_error_rtol_p99: float = 5e-2
    fp16_embedding_atol: float = 1e-2
    fp16_error_rtol: float = 1e-2
    fp16_error_rtol_p99: float = 5e-2

    def __post_init__(self) -> None:
        if not isinstance(self.opset, int) or not 13 <= self.opset <= 18:
            raise ConfigError(f"opset: expected 13 to 18 (tested with tf2onnx 1.17), got {self.opset!r}")
        check_positive("parity_rows", self.parity_rows)
        for name in ("embedding_atol", "error_rtol", "step_error_rtol", "error_atol_floor", "int8_embedding_atol",
                     "int8_error_rtol", "int8_error_rtol_p99", "fp16_embedding_atol", "fp16_error_rtol",
                     "fp16_error_rtol_p99"):
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

    device: Device = option("auto", "cuda fails without a usable GPU; auto falls back to the CPU.")
    fp16: bool = option(False, "Use scorer.fp16.onnx (CUDA only).")
    threads: int | None = option(None, "CPU threads for onnxruntime.", min=1)
    allow_cpu_nodes: bool = option(False, "Warn, not fail, when heavy nodes leave the GPU.")
    int8: bool = option(False, "Use scorer.int8.onnx (CPU; seqae export --int8).")

    def __post_init__(self) -> None:
        check_choice("device", self.device, Device)
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


def _session_field(name: str) -> Any:
    """An ``EmbedConfig`` field that is a ``SessionOptions`` field: the same default and help, kept there.
    (``EmbedConfig`` stays flat, not holding a ``SessionOptions``: callers, saved run identities and
    Prefect parameters spell its fields flat.)"""
    source = next(f for f in fields(SessionOptions) if f.name == name)
    return field(default=source.default, metadata=source.metadata)


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
            with the step's score (the least error of the windows covering it) and the mean and max
            of their step errors at it (``steps/<output>``).
        overwrite: recompute every shard, even those done.
        allow_cpu_nodes: on CUDA, warn instead of failing when a heavy node runs on the CPU.
        fail_fast: stop at the first input file that cannot be used as a whole; by default such a
            file is quarantined (recorded with its reason) and the other shards are processed.
    """

    device: Device = _session_field("device")
    fp16: bool = _session_field("fp16")
    int8: bool = _session_field("int8")
    batch_size: int | None = option(None, "Sequences per inference call (default per device).", min=1)
    read_batch_size: int = option(16384, "Rows per Parquet record batch.", min=1)
    queue_size: int = 4
    workers: int | None = option(None, "Shards read and written at once (default: cores, at most 8).", min=1)
    threads: int | None = _session_field("threads")
    step_errors: bool = option(False, "Also write step_error per valid step.")
    step_scores: bool = option(False, "Long layout: also write one row per series and time step (its score, the "
                                      "least error of the windows covering it) to OUT/steps/.")
    overwrite: bool = option(False, "Recompute shards already done.")
    allow_cpu_nodes: bool = _session_field("allow_cpu_nodes")
    fail_fast: bool = option(False, "Stop at the first unusable input file instead of quarantining it.")

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers"):
            check_positive(name, getattr(self, name), allow_none=True)
        for name in ("read_batch_size", "queue_size"):
            check_positive(name, getattr(self, name))
        self.session_options  # validates device, fp16, threads

    @property
    def session_options(self) -> SessionOptions:
        return SessionOptions(**{f.name: getattr(self, f.name) for f in fields(SessionOptions)})


@dataclass(frozen=True)
class ThresholdConfig(Config):
    """How to fit an anomaly threshold (``seqae.thresholds.Threshold``).

    Args:
        method: ``pot`` (a generalized Pareto tail), ``percentile`` (the empirical quantile), or
            ``auto``: ``pot`` where the errors hold a tail to fit (at least 10 above ``tail_start``: about
            200 errors at 0.95), else ``percentile``, as on a short series' few held-out windows.
        false_alarm_rate: the share of normal sequences that may be flagged (0 < rate < 1).
        contamination: expected share of anomalies in the fitting data (0: the data is normal).
        tail_start: pot (and auto): the quantile above which the tail is modelled (typically 0.9 to 0.98).
    """

    method: ThresholdMethod = option("auto", "pot: generalized Pareto tail; percentile: empirical; auto: pot where "
                                             "at least 10 errors lie above --tail-start, else percentile.")
    false_alarm_rate: float = option(0.01, "Share of normal rows that may be flagged.")
    contamination: float = option(0.0, "Expected share of anomalies in the fitting rows.")
    tail_start: float = option(0.95, "pot (and auto): the quantile above which the tail is modelled.")

    def __post_init__(self) -> None:
        check_choice("method", self.method, ThresholdMethod)
        check_range("false_alarm_rate", self.false_alarm_rate, 0.0, 0.5)
        if self.false_alarm_rate <= 0:
            raise ConfigError(f"false_alarm_rate: expected a value in (0, 0.5), got {self.false_alarm_rate!r}")
        check_range("contamination", self.contamination, 0.0, 0.5)
        check_range("tail_start", self.tail_start, 0.5, 1.0)


@dataclass(frozen=True)
class DriftPolicy(Config):
    """When a drift test counts and when it retrains.

    Args:
        alpha: level of the KS tests (``scipy.stats.ks_2samp``).
        min_rows: rows a test needs; fewer wait (as pending shards) for the next embed run.
        min_effect: smallest KS statistic of the reconstruction errors that counts, in [0, 1]: the
            share of rows by which the two distributions differ at most (0.2: a fifth).
        cooldown_seconds: after a retrain was requested, drift requests none for this long.
        calm_checks: counted tests in a row without drift that close an episode.
    """

    alpha: float = option(0.01, "Significance level of the KS tests.")
    min_rows: int = 1000
    min_effect: float = 0.2
    cooldown_seconds: float = 6 * 3600.0
    calm_checks: int = 2

    def __post_init__(self) -> None:
        check_range("alpha", self.alpha, 0.0, 1.0)
        if self.alpha == 0:
            raise ConfigError("alpha: expected a value in (0, 1), got 0")
        check_positive("min_rows", self.min_rows)
        check_range("min_effect", self.min_effect, 0.0, 1.0, high_open=False)
        check_range("cooldown_seconds", self.cooldown_seconds, 0.0, float("inf"))
        check_positive("calm_checks", self.calm_checks)


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
