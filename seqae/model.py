"""The LSTM sequence autoencoder family (Srivastava et al. 2015), in Keras 3 on TensorFlow.

One builder, driven by ``ModelConfig``, makes every member of the family as one functional model:

    values (batch, time, features), lengths (batch,)
      -> Standardize (training statistics, frozen)
      -> Patch (``patch`` steps side by side per LSTM step; none with patch 1)
      -> encoder: stacked LSTMs over the whole padded batch, state gathered at step ``length - 1``
      -> embedding (batch, latent_dim)
      -> decoders: reconstruct the input (optionally reversed) and/or predict ``horizon`` steps
      -> embedding, recon_error (batch,), step_error (batch, time), pred_error (batch,)

Variable length without Keras masking: an LSTM is causal, so with post-padding its output at step
``length - 1`` of a run over the padded batch *is* the masked final state, and padding can change
neither the embedding nor (errors being masked by ``lengths``) the loss. This keeps one fused LSTM
op per layer in the ONNX export instead of the ``Loop`` that a masked Keras LSTM becomes.

Decoders emit through a ``Dense`` on the 3-D tensor (one MatMul), never ``TimeDistributed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from seqae import names
from seqae.config import MODES, DecoderTask, ModelConfig
from seqae.errors import ConfigError, ModelDirError
from seqae.modeldir import ModelInfo

__all__ = ["ModelConfig", "TrainedModel", "build_autoencoder", "compile_autoencoder", "encoder_of", "load_model",
           "training_loss"]

PACKAGE = "seqae"

#: Every decoder any mode trains (``seqae.config.MODES``): ``AutoencoderHead`` has one attribute of each
#: name, ``None`` where the mode has no such decoder.
DECODERS = tuple(dict.fromkeys(decoder for spec in MODES.values() for decoder in spec.decoders))
#: What ``AutoencoderHead`` returns, in this order: saved models wire their outputs by position.
HEAD_OUTPUTS = (names.RECON_ERROR, names.STEP_ERROR, names.PRED_ERROR)


def _serializable(cls):
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


@_serializable
class Standardize(keras.layers.Layer):
    """``(x - mean) / std`` with frozen per-feature statistics fitted on the training data."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in np.ravel(mean)]
        self.std = [float(v) for v in np.ravel(std)]

    def call(self, x):
        return (x - tf.constant(self.mean, x.dtype)) / tf.constant(self.std, x.dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@_serializable
class StepGather(keras.layers.Layer):
    """Row ``b`` of ``(batch, time, units)`` at step ``lengths[b] - 1 - offset`` -> ``(batch, units)``."""

    def __init__(self, offset: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def call(self, sequence, lengths):
        index = tf.maximum(tf.cast(lengths, tf.int32) - 1 - self.offset, 0)
        return tf.gather(sequence, index, axis=1, batch_dims=1)

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@_serializable
class Patch(keras.layers.Layer):
    """``size`` consecutive time steps side by side as one LSTM step: ``(batch, time, features)`` and
    ``lengths`` -> ``(batch, ceil(time / size), size * features)`` and ``ceil(lengths / size)``.

    Steps past a row's length are zeroed first, so that its last, partly padded patch (the one the
    embedding is gathered at) holds the same whatever the padding held: the causal gather still makes
    the embedding independent of the padding. ``unpatch`` is the inverse, cut back to ``time`` steps.
    """

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, x, lengths):
        lengths = tf.cast(lengths, tf.int32)
        time = tf.shape(x)[1]
        x = x * tf.cast(tf.sequence_mask(lengths, time), x.dtype)[..., None]
        padded = (time + self.size - 1) // self.size * self.size  # non-negative operands only: ONNX's Mod differs
        x = tf.pad(x, [[0, 0], [0, padded - time], [0, 0]])
        patches = tf.reshape(x, tf.stack([tf.shape(x)[0], -1, self.size * x.shape[-1]]))
        return patches, (lengths + self.size - 1) // self.size

    def unpatch(self, patches, time):
        """``(batch, patches, size * features)`` -> ``(batch, time, features)``."""
        steps = tf.reshape(patches, tf.stack([tf.shape(patches)[0], -1, patches.shape[-1] // self.size]))
        return steps[:, :time]

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@_serializable
class SequenceDecoder(keras.layers.Layer):
    """Turns an embedding into ``steps`` outputs of ``num_features``.

    ``unconditioned``: the embedding is repeated at every step (RepeatVector style).
    ``from_state`` (the paper's unconditioned decoder): the embedding sets the initial states and the
    decoder receives no input (a zero of width one per step, which ONNX's LSTM needs): the input
    projection of the repeated embedding, a third of the decoder's work, is gone.
    ``conditioned``: the embedding sets the initial states and each step also receives the previous
    target step (zeros first): the true one in training (teacher forcing), the decoder's own
    output when scoring (``training=False``), which runs step by step.
    """

    def __init__(self, num_features: int, units: int, num_layers: int = 1, conditioned: bool = False,
                 activation: str = "tanh", dropout: float = 0.0, from_state: bool = False, **kwargs):
        super().__init__(**kwargs)
        if conditioned and from_state:
            raise ConfigError("a decoder is conditioned or starts from the state alone, not both")
        self.num_features = num_features
        self.units = units
        self.num_layers = num_layers
        self.conditioned = conditioned
        self.from_state = from_state
        self.activation = activation
        self.dropout = dropout
        self.lstms = [
            keras.layers.LSTM(units, activation=activation, return_sequences=True, name=f"lstm_{i}")
            for i in range(num_layers)
        ]
        self.drop = keras.layers.Dropout(dropout) if dropout else None
        self.project = keras.layers.Dense(num_features, name="project")
        self.init_states = (
            [keras.layers.Dense(2 * units, activation="tanh", name=f"init_{i}") for i in range(num_layers)]
            if conditioned or from_state else []
        )

    def build(self, embedding_shape, targets_shape=None):
        width = self.num_features if self.conditioned else 1 if self.from_state else embedding_shape[-1]
        for i, lstm in enumerate(self.lstms):
            lstm.build((None, None, width if i == 0 else self.units))
        for dense in self.init_states:
            dense.build(embedding_shape)
        self.project.build((None, None, self.units))

    def _states(self, embedding):
        return [tf.split(dense(embedding), 2, axis=-1) for dense in self.init_states]

    def call(self, embedding, targets, training=None):
        """Args: embedding ``(batch, latent)``; targets ``(batch, steps, features)`` (sets ``steps``,
        and feeds the conditioned decoder in training). Returns ``(batch, steps, features)``."""
        steps = tf.shape(targets)[1]
        if self.from_state:
            states = self._states(embedding)
            seq = tf.zeros(tf.stack([tf.shape(targets)[0], steps, 1]), dtype=embedding.dtype)
            for i, lstm in enumerate(self.lstms):
                seq = lstm(seq, initial_state=states[i], training=training)
                if self.drop is not None and i < self.num_layers - 1:
                    seq = self.drop(seq, training=training)
            return self.project(seq)
        if not self.conditioned:
            seq = tf.repeat(embedding[:, None, :], steps, axis=1)
            for i, lstm in enumerate(self.lstms):
                seq = lstm(seq, training=training)
                if self.drop is not None and i < self.num_layers - 1:
                    seq = self.drop(seq, training=training)
            return self.project(seq)
        states = self._states(embedding)
        if training:
            seq = tf.concat([tf.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
            for i, lstm in enumerate(self.lstms):
                seq = lstm(seq, initial_state=states[i], training=training)
                if self.drop is not None and i < self.num_layers - 1:
                    seq = self.drop(seq, training=training)
            return self.project(seq)
        return self._free_run(states, steps, tf.shape(targets)[0])

    def _free_run(self, states, steps, batch):
        previous = tf.zeros((batch, self.num_features), dtype=self.compute_dtype)
        outputs = tf.TensorArray(self.compute_dtype, size=steps)
        flat_states = [s for pair in states for s in pair]

        def body(t, previous, outputs, *flat):
            x = previous
            new_flat = []
            for i, lstm in enumerate(self.lstms):
                x, (h, c) = lstm.cell(x, [flat[2 * i], flat[2 * i + 1]], training=False)
                new_flat += [h, c]
            y = self.project(x)
            return (t + 1, y, outputs.write(t, y), *new_flat)

        result = tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), previous, outputs, *flat_states))
        return tf.transpose(result[2].stack(), [1, 0, 2])

    def get_config(self):
        return {**super().get_config(), "num_features": self.num_features, "units": self.units,
                "num_layers": self.num_layers, "conditioned": self.conditioned, "from_state": self.from_state,
                "activation": self.activation, "dropout": self.dropout}


@_serializable
class AutoencoderHead(keras.layers.Layer):
    """Targets, decoders and masked errors of one family member.

    Inputs: standardised values ``(batch, time, features)``, lengths ``(batch,)``, the embedding of
    the encoded part ``(batch, latent)``. Returns ``recon_error (batch,)``, ``step_error
    (batch, time)`` and ``pred_error (batch,)`` (zeros where the mode has no such decoder).
    Errors are mean squared errors over valid steps and features, in standardised units.
    ``step_error[b, t]`` is the error of whichever decoder covers input step ``t``; 0 elsewhere.

    The decoders are those ``seqae.config.MODES`` lists for the mode, each an attribute named after
    it; each decoder's ``target`` (``DecoderTask.target``) picks the method below that makes its errors.
    """

    def __init__(self, config: dict, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        cfg = ModelConfig.from_dict(self.config)
        self.cfg = cfg
        if cfg.num_features is None:
            raise ConfigError("num_features: expected a positive integer to build a model, got None")
        self.patch = Patch(cfg.patch_size, name="patch") if cfg.patch_size > 1 else None
        self.width = cfg.num_features * cfg.patch_size  # what the decoders emit per step: one patch
        common: dict[str, Any] = dict(num_features=self.width, units=cfg.units, num_layers=cfg.num_layers,
                                      conditioned=cfg.decoder == "conditioned", from_state=cfg.decoder == "state",
                                      activation=cfg.activation, dropout=cfg.dropout)
        for decoder in DECODERS:
            setattr(self, decoder,
                    SequenceDecoder(**common, name=decoder) if decoder in cfg.mode_spec.decoders else None)

    def build(self, x_shape, lengths_shape=None, embedding_shape=None):
        targets = (None, None, self.width)
        for name in DECODERS:  # a fixed order: the seeded initial weights do not depend on the mode's order
            decoder = getattr(self, name)
            if decoder is not None:
                decoder.build(embedding_shape, targets)

    def reconstruction(self, x, lengths, embedding, training=None, task: DecoderTask | None = None):
        """The output of the decoder of the input (``task``, default: the mode's) ``(batch, time,
        features)`` in standardised units and input order (so that step ``t`` of it belongs to input
        step ``t``)."""
        cfg = self.cfg
        task = task or next(t for t in cfg.mode_spec.trains if t.target == "input")
        encoded = tf.cast(lengths, tf.int32) - cfg.horizon
        steps = x
        if self.patch is not None:  # the decoder emits patches (``patch`` needs horizon 0 and no conditioned decoder)
            x, encoded = self.patch(x, encoded)
        target = tf.reverse_sequence(x, encoded, seq_axis=1, batch_axis=0) if cfg.reverse_target else x
        output = getattr(self, task.decoder)(embedding, target, training=training)
        if cfg.reverse_target:
            output = tf.reverse_sequence(output, encoded, seq_axis=1, batch_axis=0)
        if self.patch is not None:
            output = self.patch.unpatch(output, tf.shape(steps)[1])
        return output

    def _input_errors(self, task, x, lengths, encoded, embedding, training):
        """Reconstruction: the mean over the encoded steps, and the error of each of them."""
        valid = tf.cast(tf.sequence_mask(encoded, tf.shape(x)[1]), x.dtype)
        output = self.reconstruction(x, lengths, embedding, training=training, task=task)
        per_step = tf.reduce_mean(tf.square(output - x), axis=-1) * valid
        return tf.reduce_sum(per_step, axis=1) / tf.cast(tf.maximum(encoded, 1), x.dtype), per_step

    def _future_errors(self, task, x, lengths, encoded, embedding, training):
        """Prediction of the ``horizon`` steps after the encoded ones: their mean, and each of them
        placed at its input step."""
        positions = encoded[:, None] + tf.range(self.cfg.horizon)[None, :]
        future = tf.gather(x, positions, axis=1, batch_dims=1)
        output = getattr(self, task.decoder)(embedding, future, training=training)
        per_step = tf.reduce_mean(tf.square(output - future), axis=-1)
        placed = tf.reduce_sum(tf.one_hot(positions, tf.shape(x)[1], dtype=x.dtype) * per_step[..., None], axis=1)
        return tf.reduce_mean(per_step, axis=1), placed

    def call(self, x, lengths, embedding, training=None):
        lengths = tf.cast(lengths, tf.int32)
        encoded = lengths - self.cfg.horizon  # steps the encoder state summarises
        step_error = tf.zeros(tf.shape(x)[:2], x.dtype)
        errors = {name: tf.zeros(tf.shape(x)[:1], x.dtype) for name in HEAD_OUTPUTS if name != names.STEP_ERROR}
        targets = {"input": self._input_errors, "future": self._future_errors}
        for task in self.cfg.mode_spec.trains:
            errors[task.error], per_step = targets[task.target](task, x, lengths, encoded, embedding, training)
            step_error += per_step
        errors[names.STEP_ERROR] = step_error
        return tuple(errors[name] for name in HEAD_OUTPUTS)

    def get_config(self):
        return {**super().get_config(), "config": self.config}


def build_autoencoder(config: ModelConfig, mean=None, std=None) -> keras.Model:
    """Build the autoencoder as one functional model.

    Args:
        config: the family member.
        mean, std: ``(features,)`` normalisation statistics (identity when omitted).

    Returns:
        A ``keras.Model`` with inputs ``values (batch, time, features)`` float32 and ``lengths
        (batch,)`` int32, and a dict of outputs ``embedding (batch, latent)``, ``recon_error (batch,)``,
        ``step_error (batch, time)`` and, when the mode predicts, ``pred_error (batch,)``.
    """
    f = config.num_features
    if f is None:
        raise ConfigError("num_features: expected a positive integer to build a model, got None "
                          "(train() takes it from the data)")
    mean = np.zeros(f) if mean is None else np.asarray(mean, dtype=np.float64)
    std = np.ones(f) if std is None else np.asarray(std, dtype=np.float64)
    if mean.shape != (f,) or std.shape != (f,):
        raise ConfigError(f"normalisation: expected mean and std of shape ({f},), got {mean.shape} and {std.shape}")
    values = keras.Input((None, f), name=names.INPUT_VALUES, dtype="float32")
    lengths = keras.Input((), name=names.INPUT_LENGTHS, dtype="int32")
    x = Standardize(mean, std, name="standardize")(values)
    seq, steps = x, lengths  # what the encoder reads, and how many of its steps each row fills
    if config.patch_size > 1:
        seq, steps = Patch(config.patch_size, name="encoder_patch")(x, lengths)
    for i in range(config.num_layers):
        seq = keras.layers.LSTM(config.units, activation=config.activation, return_sequences=True,
                                name=f"encoder_lstm_{i}")(seq)
        if config.dropout and i < config.num_layers - 1:
            seq = keras.layers.Dropout(config.dropout, name=f"encoder_dropout_{i}")(seq)
    bottleneck = keras.layers.Dense(config.latent_dim, name="bottleneck") if config.latent_dim else None

    def embed(state):
        return bottleneck(state) if bottleneck is not None else state

    embedding = keras.layers.Identity(name=names.EMBEDDING)(embed(StepGather(name="last_step")(seq, steps)))
    encoded = embedding
    if config.predicts:  # decoders start from the state before the predicted steps
        encoded = embed(StepGather(config.horizon, name="encoded_step")(seq, steps))  # patch 1 (ModelConfig)
    if config.dropout:
        encoded = keras.layers.Dropout(config.dropout, name="embedding_dropout")(encoded)
    errors = dict(zip(HEAD_OUTPUTS, AutoencoderHead(config.to_dict(), name="head")(x, lengths, encoded)))
    outputs = {name: embedding if name == names.EMBEDDING else keras.layers.Identity(name=name)(errors[name])
               for name in config.mode_spec.outputs}
    model = keras.Model({names.INPUT_VALUES: values, names.INPUT_LENGTHS: lengths}, outputs, name="seqae")
    return model


def encoder_of(model: keras.Model) -> keras.Model:
    """The standalone encoder: ``values, lengths -> embedding (batch, latent)``, sharing weights."""
    return keras.Model(model.inputs, model.get_layer(names.EMBEDDING).output, name="seqae_encoder")


def training_loss(config: ModelConfig):
    """Loss dict for ``Model.compile``: the model's error outputs are the loss terms themselves."""
    tasks = config.mode_spec.trains
    losses = {task.error: _identity_loss for task in tasks}
    weights = {task.error: getattr(config, task.weight) if task.weight else 1.0 for task in tasks}
    return losses, weights


@_serializable
def _identity_loss(y_true, y_pred):
    return y_pred


def compile_autoencoder(model: keras.Model, config: ModelConfig, *, ema: float | None = None) -> keras.Model:
    """Compile with Adam; ``ema``: also keep a moving average of the weights with this momentum
    (``TrainConfig.ema``; ``keras.callbacks.SwapEMAWeights`` puts it in the model)."""
    losses, weights = training_loss(config)
    averaging: dict[str, Any] = {"use_ema": True, "ema_momentum": ema} if ema is not None else {}
    optimizer = keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm, **averaging)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights)
    return model


@dataclass
class TrainedModel:
    """A model directory loaded back: the Keras model, its encoder and the typed ``seqae.json``."""

    directory: Path
    model: keras.Model
    info: ModelInfo

    @property
    def config(self) -> ModelConfig:
        return self.info.model

    @property
    def metadata(self) -> dict[str, Any]:
        return self.info.metadata

    @property
    def encoder(self) -> keras.Model:
        return encoder_of(self.model)

    def predict(self, values: np.ndarray, lengths: np.ndarray, batch_size: int = 1024) -> dict[str, np.ndarray]:
        """All outputs for ``values (batch, time, features)`` raw and ``lengths (batch,)``."""
        return self.model.predict({names.INPUT_VALUES: values.astype(np.float32),
                                   names.INPUT_LENGTHS: lengths.astype(np.int32)},
                                  batch_size=batch_size, verbose=0)


    def reconstruct(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray | None:
        """What the decoder makes of each row: ``(batch, time, features)`` in raw units and input
        order, valid up to each row's encoded length; ``None`` when the mode does not reconstruct."""
        head = self.model.get_layer("head")
        if not head.cfg.reconstructs:
            return None
        x, _, encoded = head.input
        inner = keras.Model(self.model.inputs, [x, encoded])
        standardized, embedding = inner.predict({names.INPUT_VALUES: values.astype(np.float32),
                                                 names.INPUT_LENGTHS: lengths.astype(np.int32)}, verbose=0)
        output = head.reconstruction(tf.constant(standardized), tf.constant(lengths.astype(np.int32)),
                                     tf.constant(embedding), training=False).numpy()
        scale = self.model.get_layer("standardize")
        return output * np.asarray(scale.std, np.float32) + np.asarray(scale.mean, np.float32)


def load_model(model_dir: str | Path, *, verify_contract: bool = True) -> TrainedModel:
    """Load ``model.keras`` (``safe_mode=True``) and ``seqae.json`` from a model directory.

    Args:
        verify_contract: refuse an exported directory whose ``model``, ``data`` or ``feature_names``
            sections changed since its export (``ModelInfo.read``). ``seqae.export`` passes ``False``:
            those sections may have been edited (a new ``data.max_length``) and it records them anew.

    Raises:
        ModelDirError: a file is missing or the metadata is not seqae's.
    """
    info = ModelInfo.read(model_dir, verify_contract=verify_contract)
    model_path = info.path(names.MODEL_FILE)
    if not model_path.is_file():
        raise ModelDirError(f"{info.directory}: {model_path.name} is missing; expected a model directory written by "
                            "seqae train")
    model = keras.models.load_model(model_path, safe_mode=True)
    compile_autoencoder(model, info.model)
    return TrainedModel(info.directory, model, info)
