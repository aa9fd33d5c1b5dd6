"""Train an autoencoder on Parquet shards and write a model directory atomically.

Normalisation is fitted in a first pass over the training split; the validation split is chosen by a
seeded hash of the key (or by time, see ``choose_split``), so it is the same on every run and for every
sharding of the same rows. When the decoded rows of both splits fit ``TrainConfig.cache_mb`` that pass
keeps them, and every epoch shuffles them in memory: Parquet (or object storage) is read once. Larger
data streams from the shard readers every epoch, shuffled in blocks of ``shuffle_buffer`` rows; memory
is then bounded by the read batch and the buffer, never by the dataset. Either way ``tf.data`` receives
whole batches, each cut to its longest row, built in numpy.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from seqae import names
from seqae._optional import import_optional
from seqae._version import __version__
from seqae.config import DataConfig, ModelConfig, TrainConfig, load_config_file
from seqae.data import Normalizer, RowFilter, ShardReader, key_runs, pad_concat, resolve_shards
from seqae.errors import ConfigError, ModelDirError, SeqaeError
from seqae.modeldir import FORMAT, ModelInfo
from seqae.modelstore import location_of, require_bucket, staged_model_dir
from seqae.storage import has_uri_scheme, replace_directory, utc_now, write_json

#: The longest sequence a model accepts, as a multiple of the longest it was trained on.
LENGTH_MARGIN = 2

__all__ = ["Split", "TrainConfig", "TrainResult", "choose_split", "load_config_file", "split_of", "train"]

log = logging.getLogger(__name__)


def split_of(keys: pa.Array, seed: int, validation_fraction: float) -> np.ndarray:
    """``(rows,)`` bool, True for validation rows: a seeded hash of each key, stable across runs."""
    if validation_fraction <= 0:
        return np.zeros(len(keys), dtype=bool)
    if pa.types.is_integer(keys.type):
        # splitmix64, vectorised: integer keys need no Python objects.
        z = keys.to_numpy(zero_copy_only=False).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15 * (seed + 1) % 2**64)
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        unit = (z >> np.uint64(11)).astype(np.float64) / float(2**53)
    else:
        salt = str(seed).encode()
        unit = np.array([zlib.crc32(salt + str(k).encode()) / 2**32 for k in keys.to_pylist()])
    return unit < validation_fraction


#: ``auto`` holds out whole series when at least this many are expected in the validation split.
MIN_VALIDATION_SERIES = 2


@dataclass
class Split:
    """Which rows (sequences or windows) are held out for validation, and why.

    ``method``: ``key`` (a seeded hash of the key; whole series in the long layout), ``time`` (the last
    part of each series, see ``TrainConfig.validation_split``) or ``none``. ``cuts`` (time only):
    series key -> start time of its first validation window; windows ending at or after it that start
    before it are the gap, in neither split.
    """

    method: str
    reason: str
    seed: int = 0
    fraction: float = 0.0
    cuts: dict | None = None

    def assign(self, batch, config: DataConfig) -> np.ndarray:
        """``(rows,)`` int8 per row of ``batch``: 0 train, 1 validation, -1 gap (time split only)."""
        if self.method == "none" or not len(batch):
            return np.zeros(len(batch), dtype=np.int8)
        keys = _series_keys(batch, config)
        if self.method == "key":
            return split_of(keys, self.seed, self.fraction).astype(np.int8)
        if self.cuts is None:
            raise SeqaeError(f"validation split {self.method!r}: expected cuts (series key -> start time of its "
                             "first validation window), found none; build time splits with choose_split")
        out = np.zeros(len(batch), dtype=np.int8)
        starts = batch.keys.column(names.WINDOW_START).to_numpy(zero_copy_only=False)
        ends = batch.keys.column(names.WINDOW_END).to_numpy(zero_copy_only=False)
        key_values = keys.to_numpy(zero_copy_only=False)
        for a, b in key_runs(key_values):
            cut = self.cuts.get(_plain(key_values[a]))
            if cut is not None:
                out[a:b] = np.where(starts[a:b] >= cut, 1, np.where(ends[a:b] >= cut, -1, 0))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "reason": self.reason,
                **({"series_held_out_by_time": len(self.cuts)} if self.cuts is not None else {})}


def _plain(value):
    """A numpy scalar as the Python value a dict key compares with."""
    return value.item() if isinstance(value, np.generic) and not isinstance(value, np.datetime64) else value


def choose_split(shards, config: DataConfig, train_config: TrainConfig, *, num_features: int | None,
                 row_filter: RowFilter | None) -> Split:
    """Decide how validation rows are held out (``TrainConfig.validation_split``).

    The time split reads the windows' start times once: memory is one start time per window, kept
    until the cut of each series is known.
    """
    fraction, seed, asked = train_config.validation_fraction, train_config.seed, train_config.validation_split
    if fraction <= 0:
        return Split("none", "validation_fraction is 0")
    if config.layout != "long":
        if asked == "time":
            raise ConfigError("validation_split: 'time' needs the long layout (a sequence-layout row has no "
                              "time within its data set); use 'key' or 'auto'")
        return Split("key", f"a seeded hash of '{config.key_column}' holds out {fraction:g} of the rows",
                     seed, fraction)
    if asked == "key":
        return Split("key", f"asked: a seeded hash of '{config.key_column}' holds out {fraction:g} of the series",
                     seed, fraction)
    starts: dict = {}
    for shard in shards:
        reader = ShardReader(shard, config, batch_size=train_config.read_batch_size, row_filter=row_filter,
                             num_features=num_features)
        for batch, _ in reader:
            if not len(batch):
                continue
            keys = _series_keys(batch, config).to_numpy(zero_copy_only=False)
            begin = batch.keys.column(names.WINDOW_START).to_numpy(zero_copy_only=False)
            for a, b in key_runs(keys):
                starts.setdefault(_plain(keys[a]), []).append(begin[a:b])
    n_series = len(starts)
    if asked == "auto" and n_series * fraction >= MIN_VALIDATION_SERIES:
        return Split("key", f"auto: {n_series} series, enough to hold out whole series ({fraction:g} of them by "
                            f"a seeded hash of '{config.key_column}')", seed, fraction)
    cuts = {}
    for key, parts in starts.items():
        begin = np.sort(np.concatenate(parts))
        held = int(len(begin) * fraction)
        if held:
            cuts[key] = begin[len(begin) - held]
    why = "asked" if asked == "time" else f"auto: {n_series} series, too few to hold out whole ones"
    return Split("time", f"{why}; the last {fraction:g} of each series' windows, after a gap of the windows "
                         "overlapping them (no time step in both splits)", seed, fraction, cuts)


@dataclass
class Cached:
    """The decoded rows of one split, padded to the split's longest: ``values (rows, time, features)``."""

    values: np.ndarray
    lengths: np.ndarray


class _Cache:
    """Collects both splits during the planning pass while they fit ``budget`` bytes (padded)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.parts: dict[int, list] | None = {0: [], 1: []}
        self.rows = self.longest = self.width = 0

    def add(self, values: np.ndarray, lengths: np.ndarray, side: np.ndarray) -> None:
        if self.parts is None:
            return
        self.rows += int((side >= 0).sum())
        self.longest, self.width = max(self.longest, values.shape[1]), values.shape[2]
        if self.rows * self.longest * self.width * 4 > self.budget:
            self.parts = None  # too big: stream every epoch; what was kept is freed now
            return
        for which in (0, 1):
            take = side == which
            if take.any():
                self.parts[which].append((values[take], lengths[take]))

    def result(self) -> dict[int, Cached] | None:
        if self.parts is None:
            return None
        return {which: Cached(*pad_concat(parts, self.width)) for which, parts in self.parts.items()}


def shuffled_batches(chunks, batch_size: int, *, width: int, buffer: int = 0,
                     rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of ``batch_size`` rows (the last may be short), each cut to its longest row.

    ``chunks`` yields ``(values, lengths)`` of any size. With ``rng``, rows are shuffled in blocks of at
    least ``buffer`` rows (one block holding the whole input is a full permutation); the rows left over
    after a block's whole batches join the next block, so every batch but the last is full.
    """
    pending: list = []
    held = 0

    def drain(final: bool):
        nonlocal pending, held
        if not held:
            return
        values, lengths = pending[0] if len(pending) == 1 else pad_concat(pending, width)
        # Indexing batch by batch: one permuted copy of the block would double the cache's memory.
        order = rng.permutation(held) if rng is not None else None
        whole = held if final else held // batch_size * batch_size
        for a in range(0, whole, batch_size):
            index = slice(a, a + batch_size) if order is None else order[a:a + batch_size]
            n = lengths[index]
            yield values[index, :int(n.max())], n
        rest = slice(whole, None) if order is None else order[whole:]
        pending = [(values[rest], lengths[rest])] if whole < held else []
        held -= whole

    for values, lengths in chunks:
        if not len(lengths):
            continue
        pending.append((values, lengths))
        held += len(lengths)
        if held >= max(buffer, batch_size):
            yield from drain(False)
    yield from drain(True)


@dataclass
class DataPlan:
    """What one pass over the data found: shards, feature count, split sizes, normalisation, and the
    decoded rows of both splits (``cache``, keyed 0 train / 1 validation) when they fit the budget."""

    shards: list
    num_features: int
    normalizer: Normalizer
    train_rows: int
    validation_rows: int
    longest: int
    shard_stats: list[dict]
    split: Split
    gap_rows: int = 0
    warnings: list[str] = field(default_factory=list)
    cache: dict[int, Cached] | None = None


def _series_keys(batch, config: DataConfig) -> pa.Array:
    return batch.keys.column(config.key_column).combine_chunks()


def iter_split(shards, config: DataConfig, train_config: TrainConfig, *, validation: bool,
               num_features: int, row_filter: RowFilter | None, split: Split,
               order_seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(values, lengths)`` of one split, shard by shard (in a seeded random order if asked)."""
    order = list(range(len(shards)))
    if order_seed is not None:
        np.random.default_rng(order_seed).shuffle(order)
    for i in order:
        reader = ShardReader(shards[i], config, batch_size=train_config.read_batch_size,
                             row_filter=row_filter, num_features=num_features)
        for batch, _ in reader:
            if not len(batch):
                continue
            take = split.assign(batch, config) == (1 if validation else 0)
            if take.any():
                yield batch.values[take], batch.lengths[take]


def plan_data(data: str, config: DataConfig, train_config: TrainConfig,
              num_features: int | None = None) -> DataPlan:
    """First pass: resolve shards, fit normalisation on the training split, count both splits."""
    shards = resolve_shards(data)
    row_filter = RowFilter.parse(train_config.row_filter) if train_config.row_filter else None
    split = choose_split(shards, config, train_config, num_features=num_features, row_filter=row_filter)
    normalizer = Normalizer()
    cache = _Cache(train_config.cache_mb * 2**20)
    train_rows = validation_rows = gap_rows = longest = 0
    stats = []
    for shard in shards:
        reader = ShardReader(shard, config, batch_size=train_config.read_batch_size,
                             row_filter=row_filter, num_features=num_features)
        for batch, _ in reader:
            if not len(batch):
                continue
            side = split.assign(batch, config)
            normalizer.partial_fit(batch.values[side == 0], batch.lengths[side == 0])
            cache.add(batch.values, batch.lengths, side)
            train_rows += int((side == 0).sum())
            validation_rows += int((side == 1).sum())
            gap_rows += int((side == -1).sum())
            longest = max(longest, int(batch.lengths.max()))
        if num_features is None and reader.stats.rows_in:
            num_features = reader.num_features  # a shard with rows fixes it; an empty one sorting first must not
        stats.append({**reader.stats.to_dict(), "fingerprint": shard.fingerprint, "size": shard.size})
    if train_rows == 0:
        accepted = sum(s["sequences_out"] for s in stats)
        unit = "windows" if config.layout == "long" else "rows"
        raise SeqaeError(f"{data}: no training {unit}: of {accepted} accepted, the {split.method} validation split "
                         f"holds {validation_rows}" + (f" and its gap {gap_rows}" if gap_rows else "")
                         + f" (validation_fraction {train_config.validation_fraction:g}); read "
                         f"{sum(s['rows_in'] for s in stats)} rows, filtered {sum(s['rows_filtered'] for s in stats)}, "
                         f"rejected {sum(s['rows_rejected'] for s in stats)}. Lower --validation-fraction, or give "
                         "more data")
    if num_features is None:  # unreachable: a training row means a shard with rows fixed it above
        raise SeqaeError(f"{data}: {train_rows} training rows but no shard fixed num_features")
    warnings = []
    if validation_rows == 0:
        unit = "windows" if config.layout == "long" else "rows"
        why = {"none": "validation_fraction is 0",
               "key": f"the seeded hash held out none of the keys (too few for validation_fraction "
                      f"{train_config.validation_fraction:g})",
               "time": f"no series has {1 / max(train_config.validation_fraction, 1e-9):.0f} or more windows, so "
                       f"none can give its last {train_config.validation_fraction:g} (or the gap took them)"}
        warnings.append(f"no validation split: {why[split.method]}; early stopping and the learning-rate schedule "
                        f"watch the training loss, and the threshold reference is the training {unit}")
    return DataPlan(shards, num_features, normalizer, train_rows, validation_rows, longest, stats, split,
                    gap_rows, warnings, cache.result())


def make_dataset(plan: DataPlan, config: DataConfig, train_config: TrainConfig, *, validation: bool,
                 targets: tuple[str, ...] = (names.RECON_ERROR,)):
    """A ``tf.data.Dataset`` of ``({values, lengths}, zero targets)`` batches for ``Model.fit``.

    Batches come whole from numpy (``shuffled_batches``): from ``plan.cache`` (a full permutation per
    epoch) or streamed from the shards (shard order and blocks of ``shuffle_buffer`` rows shuffled).
    """
    import tensorflow as tf

    row_filter = RowFilter.parse(train_config.row_filter) if train_config.row_filter else None
    epoch = {"n": 0}
    shuffle = train_config.shuffle and not validation
    cached = plan.cache[1 if validation else 0] if plan.cache is not None else None

    def generator():
        chunks: Iterable[tuple[np.ndarray, np.ndarray]]
        epoch["n"] += 1
        seed = train_config.seed * 1_000_003 + epoch["n"] if shuffle else None
        if cached is not None:
            chunks, buffer = [(cached.values, cached.lengths)], len(cached.lengths)
        else:
            chunks = iter_split(plan.shards, config, train_config, validation=validation,
                                num_features=plan.num_features, row_filter=row_filter, split=plan.split,
                                order_seed=seed)
            buffer = train_config.shuffle_buffer
        yield from shuffled_batches(chunks, train_config.batch_size, width=plan.num_features, buffer=buffer,
                                    rng=np.random.default_rng(seed) if shuffle else None)

    signature = (tf.TensorSpec((None, None, plan.num_features), tf.float32), tf.TensorSpec((None,), tf.int32))
    ds = tf.data.Dataset.from_generator(generator, output_signature=signature)

    def to_inputs(v, n):
        zeros = tf.zeros_like(n, dtype=tf.float32)
        return {names.INPUT_VALUES: v, names.INPUT_LENGTHS: n}, {k: zeros for k in targets}

    rows = plan.validation_rows if validation else plan.train_rows
    # The generator's length is unknown to tf.data; stating it keeps Keras from guessing per epoch.
    ds = ds.apply(tf.data.experimental.assert_cardinality(-(-rows // train_config.batch_size)))
    return ds.map(to_inputs).prefetch(tf.data.AUTOTUNE)


@dataclass
class StepDecision:
    """What ``StepPlateau.update`` decided at one evaluation."""

    improved: bool
    halve: bool
    stop: bool


@dataclass
class StepPlateau:
    """Early stopping and learning-rate halving counted in optimizer steps (``TrainConfig``).

    ``update(step, loss)`` is called at each evaluation (an epoch end) with the optimizer steps taken
    so far. An improvement is a loss below ``best * (1 - min_delta)``. The learning rate is halved
    when ``lr_patience`` steps have passed since the last improvement or halving; training stops when
    ``patience`` steps have passed since the last improvement and at least ``min_steps`` are done.
    """

    patience: int
    lr_patience: int
    min_steps: int = 0
    min_delta: float = 0.0
    best: float = float("inf")
    best_step: int = 0
    last_change: int = 0

    @classmethod
    def of(cls, config: TrainConfig) -> StepPlateau:
        return cls(config.patience, config.lr_patience, config.min_steps, config.min_delta)

    def update(self, step: int, loss: float) -> StepDecision:
        improved = bool(np.isfinite(loss)) and (not np.isfinite(self.best)
                                                or loss < self.best - abs(self.best) * self.min_delta)
        if improved:
            self.best, self.best_step, self.last_change = float(loss), step, step
        halve = not improved and step - self.last_change >= self.lr_patience
        if halve:
            self.last_change = step
        stop = step >= self.min_steps and step - self.best_step >= self.patience
        return StepDecision(improved, halve, stop)


def step_schedule(rule: StepPlateau, *, monitor: str, learning_rate: float, warmup_steps: int = 0,
                  min_learning_rate: float = 0.0):
    """A Keras callback that applies ``rule`` at each epoch end, warms the learning rate up linearly
    over the first ``warmup_steps`` steps, keeps the weights of the best evaluation and restores them
    when training ends. ``steps``, ``best_epoch`` (from 1) and ``best_step`` are read after ``fit``."""
    import keras

    class StepSchedule(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.steps = self.best_step = self.best_epoch = 0
            self.scale = 1.0
            self.best_weights = None
            if warmup_steps:
                self._set_rate(learning_rate / warmup_steps)

        def _set_rate(self, value: float) -> None:
            self.model.optimizer.learning_rate.assign(value)

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps <= warmup_steps:  # the rate of the next step
                self._set_rate(learning_rate * self.scale * min(1.0, (self.steps + 1) / warmup_steps))

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            loss = logs.get(monitor)
            if loss is None:
                raise SeqaeError(f"training: the schedule watches {monitor!r}, which the epoch's logs lack "
                                 f"(they hold {', '.join(sorted(logs))})")
            decision = rule.update(self.steps, float(loss))
            if decision.improved:
                self.best_weights, self.best_epoch, self.best_step = self.model.get_weights(), epoch + 1, self.steps
            if decision.halve and learning_rate * self.scale > min_learning_rate:
                self.scale /= 2
                log.info("step %d: no improvement for %d steps, learning rate halved to %.3g", self.steps,
                         rule.lr_patience, max(learning_rate * self.scale, min_learning_rate))
                if self.steps >= warmup_steps:
                    self._set_rate(max(learning_rate * self.scale, min_learning_rate))
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            if decision.stop:
                log.info("step %d: no improvement since step %d (patience %d steps), stopping", self.steps,
                         rule.best_step, rule.patience)
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return StepSchedule()


def _previous_version(model_dir: str | os.PathLike) -> int:
    """The version of the model being replaced (0 when there is none or it cannot be read); local or
    at a URI."""
    if not location_of(model_dir).join(names.METADATA_FILE).is_file():
        return 0
    try:
        return ModelInfo.read(model_dir).model_version
    except ModelDirError as exc:
        log.warning("%s; numbering the new model from 1", exc)
        return 0


@dataclass
class TrainResult:
    """A trained model directory and what training recorded in its ``seqae.json``.

    Attributes:
        model_dir: a local path, or the URI the directory was uploaded to.
        metadata: the whole ``seqae.json``; the properties below name the parts a caller reads.
    """

    model_dir: Path | str
    metadata: dict[str, Any]

    @property
    def model_id(self) -> str:
        return self.metadata["model_id"]

    @property
    def model_version(self) -> int:
        return self.metadata["model_version"]

    @property
    def training(self) -> dict[str, Any]:
        """``seqae.json``'s ``training`` section: data, config, split, epochs, metrics, warnings, seconds."""
        return self.metadata["training"]

    @property
    def epochs(self) -> int:
        return self.training["epochs"]

    @property
    def best_epoch(self) -> int:
        return self.training["best_epoch"]

    @property
    def metrics(self) -> dict[str, Any]:
        """The best epoch's losses (``loss``, ``val_loss`` and one per output)."""
        return self.training["metrics"]


def _library_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"seqae": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "pyarrow": pa.__version__, "python": platform.python_version()}


def _plot_history(history: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], label="training")
    if history.get("val_loss"):
        ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE, standardised units)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train(data: str, model_dir: str | os.PathLike, *, model_config: ModelConfig | None = None,
          data_config: DataConfig | None = None, train_config: TrainConfig | None = None,
          on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train an autoencoder on the shards at ``data`` and write ``model_dir``.

    Args:
        data: Parquet file, directory, glob or URI.
        model_dir: where ``model.keras``, ``seqae.json`` and ``loss.png`` go: a local folder (replaced
            atomically) or a URI such as ``s3://bucket/models/ecg`` (written in a local temporary
            folder, then uploaded file by file with ``seqae.json`` last; see ``seqae.modelstore``).
            Credentials in a URI are refused; the URI's bucket must exist (checked before training).
        model_config: the autoencoder; ``num_features=None`` (the default) takes it from the data.
        data_config: the data contract (default: sequence layout, ``id`` / ``values``).
        train_config: fitting options.
        on_epoch: called after each epoch with its number (from 1) and logs.

    Returns:
        The model directory and its metadata (as written to ``seqae.json``).
    """
    # Before any data is read or TensorFlow loads: credentials in a URI are refused, and a bucket that
    # does not exist (or a store that cannot be reached) fails now, not at the upload after training.
    target = require_bucket(model_dir, "the model directory")
    for module in ("tensorflow", "keras", "matplotlib"):  # before any work: the plot comes after training
        import_optional(module, "train", needed_for="seqae.train")
    import keras

    from seqae.model import build_autoencoder, compile_autoencoder, training_loss

    started = time.time()
    data_config = data_config or DataConfig()
    train_config = train_config or TrainConfig()
    model_config = model_config or ModelConfig()
    if model_config.min_length > data_config.min_length:
        # Predicting ``horizon`` steps needs at least one more step to encode; shorter rows are rejects.
        data_config = dataclasses.replace(data_config, min_length=model_config.min_length)
    plan = plan_data(data, data_config, train_config, num_features=model_config.num_features)
    cfg = dataclasses.replace(model_config, num_features=plan.num_features).resolve_patch(plan.longest)
    if data_config.max_length is None:
        # Recorded with the model and enforced when embedding (too_long rejects): one outlier row can
        # no longer pad a whole read batch to its length. Twice the longest training row; set
        # DataConfig.max_length to choose another.
        data_config = dataclasses.replace(data_config, max_length=max(LENGTH_MARGIN * plan.longest,
                                                                      data_config.window or 1))
    log.info("training on %d rows, validating on %d (%s split; %d shards, %d features, longest %d; %d steps per "
             "LSTM step)", plan.train_rows, plan.validation_rows, plan.split.method, len(plan.shards),
             plan.num_features, plan.longest, cfg.patch_size)
    for warning in plan.warnings:
        log.warning("%s", warning)

    keras.utils.set_random_seed(train_config.seed)
    model = build_autoencoder(cfg, plan.normalizer.mean_, plan.normalizer.std_)
    compile_autoencoder(model, cfg, ema=train_config.ema)
    targets = tuple(training_loss(cfg)[0])
    train_ds = make_dataset(plan, data_config, train_config, validation=False, targets=targets)
    val_ds = (make_dataset(plan, data_config, train_config, validation=True, targets=targets)
              if plan.validation_rows else None)
    monitor = "val_loss" if plan.validation_rows >= train_config.min_validation_rows else "loss"
    if val_ds is not None and monitor == "loss":
        log.info("early stopping and the learning-rate schedule watch the training loss: the loss of %d held-out rows "
                 "(fewer than min_validation_rows, %d) would pick the epoch to keep by chance; those rows stay the "
                 "threshold and drift reference", plan.validation_rows, train_config.min_validation_rows)
    rule = StepPlateau.of(train_config)
    schedule = step_schedule(rule, monitor=monitor, learning_rate=cfg.learning_rate,
                             warmup_steps=train_config.warmup_steps, min_learning_rate=train_config.min_learning_rate)
    # With weight averaging, the average is in the model while it is validated and at each epoch end,
    # so the schedule keeps (and at the end restores) averaged weights; it must come first.
    callbacks: list = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if train_config.ema is not None else []
    callbacks.append(schedule)
    # One pass over a small set is a few steps: an epoch is then min_epoch_steps steps of the data
    # repeated, so that validation runs every so many steps, not after each one.
    pass_steps = -(-plan.train_rows // train_config.batch_size)
    steps_per_epoch = max(pass_steps, train_config.min_epoch_steps)

    def epoch_end(epoch: int, logs: dict) -> None:
        log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k} {v:.4g}" for k, v in logs.items()))
        if on_epoch is not None:
            on_epoch(epoch + 1, dict(logs))

    callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=epoch_end))
    history = model.fit(train_ds.repeat(), validation_data=val_ds, epochs=train_config.max_epochs,
                        steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0,
                        shuffle=False).history  # tf.data shuffles
    history = {k: [float(v) for v in vals] for k, vals in history.items()}
    # The epoch whose weights were restored (improvements smaller than min_delta do not count).
    best_epoch = schedule.best_epoch or len(history["loss"])
    model_dir = Path(model_dir) if target.is_local and not has_uri_scheme(os.fspath(model_dir)) else target.uri
    version = _previous_version(model_dir) + 1
    metadata = {
        "format": FORMAT,
        "model_id": uuid.uuid4().hex,
        "model_version": version,
        "created_at": utc_now(),
        "model": cfg.to_dict(),
        "data": data_config.to_dict(),
        "feature_names": data_config.feature_names(plan.num_features),
        "key_columns": list(data_config.key_columns),
        "normalization": plan.normalizer.to_dict(),
        "training": {
            "data": str(data),
            "shards": plan.shard_stats,
            "config": train_config.to_dict(),
            "train_rows": plan.train_rows,
            "validation_rows": plan.validation_rows,
            "monitor": monitor,
            "validation": {**plan.split.to_dict(), "gap_rows": plan.gap_rows},
            "warnings": plan.warnings,
            "longest": plan.longest,
            "epochs": len(history["loss"]),
            "best_epoch": best_epoch,
            "steps_per_epoch": steps_per_epoch,
            "steps": schedule.steps,
            "best_step": schedule.best_step,
            "metrics": {k: v[best_epoch - 1] for k, v in history.items()},
            "history": history,
            "seconds": round(time.time() - started, 1),
        },
        "versions": _library_versions(),
    }

    with staged_model_dir(model_dir, fresh=True) as local, replace_directory(local) as tmp:
        model.save(tmp / names.MODEL_FILE)
        write_json(tmp / names.METADATA_FILE, metadata)
        _plot_history(history, tmp / names.LOSS_PLOT_FILE,
                      f"{cfg.mode}, {cfg.decoder} decoder: best {monitor} {history[monitor][best_epoch - 1]:.4f} "
                      f"at epoch {best_epoch}")
    log.info("wrote %s (best %s %.5f at epoch %d of %d)", model_dir, monitor,
             history[monitor][best_epoch - 1], best_epoch, len(history["loss"]))
    return TrainResult(model_dir, metadata)
