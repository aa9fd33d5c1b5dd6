"""A model opened for serving: verified artifacts, the scorer session and the output schema, created
once and reused for every shard (one per process or Ray worker, never one per shard)."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from seqae import names
from seqae.config import DataConfig, EmbedConfig
from seqae.errors import ConfigError, ModelDirError
from seqae.infer.artifacts import ModelArtifacts
from seqae.infer.commit import RunIdentity
from seqae.infer.session import NeighboursSession, NullScorer, Scorer, ScorerSession, WithNeighbours
from seqae.infer.steps import STEPS_FORMAT
from seqae.io import (
    OutputColumn,
    output_options,
    output_schema,
    scorer_outputs,
    select_columns,
    step_scores_schema,
)
from seqae.modeldir import ModelInfo
from seqae.storage import Location, sha256_text
from seqae.thresholds import Threshold

log = logging.getLogger(__name__)

#: Sequences per onnxruntime call. Small batches were fastest on a 2-core CPU (cache-resident
#: LSTM state), large ones keep a GPU busy.
DEFAULT_BATCH = {"CPUExecutionProvider": 128, "CUDAExecutionProvider": 16384}


def threshold_id(threshold: Threshold | None) -> str:
    return threshold.fingerprint() if threshold is not None else "none"


def contract_id(data: DataConfig) -> str:
    return sha256_text(json.dumps(data.to_dict(), sort_keys=True))[:16]


_SHARED: dict[tuple, InferenceModel] = {}
_SHARED_LOCK = threading.Lock()
_SESSIONS_OPENED = 0


def has_neighbours(info: ModelInfo, data: DataConfig) -> bool:
    """The model scores windows by their distance to a bank of training windows too (``neighbours.onnx``,
    written by ``seqae export`` for the long layout)."""
    return data.layout == "long" and names.NEIGHBOURS_ONNX in info.files


def _identity(info: ModelInfo, config: EmbedConfig, onnx_sha256: str, data: DataConfig,
              threshold: Threshold | None) -> RunIdentity:
    # step_errors has its own field (entries recorded it before optional columns had a table).
    options = tuple(o for o in output_options(config) if o != "step_errors")
    neighbours = info.files[names.NEIGHBOURS_ONNX].sha256 if has_neighbours(info, data) else ""
    return RunIdentity(info.model_id, info.model_version, config.session_options.scorer_file, onnx_sha256,
                       config.step_errors, contract_id(data), threshold_id(threshold), config.step_scores, options,
                       STEPS_FORMAT if config.step_scores else 0, neighbours)


def model_location(info: ModelInfo) -> Location:
    """Where ``info``'s model directory is, on its filesystem (``ModelInfo.read`` always sets it).

    Raises:
        ModelDirError: ``info`` was built by hand without a ``location``.
    """
    if info.location is None:
        raise ModelDirError(f"{info.where}: no location; expected a ModelInfo from ModelInfo.read, found one "
                            "built without its location")
    return info.location


def _place(model_dir: str | os.PathLike) -> str:
    """A model directory's identity as a place: the resolved local path, or the URI."""
    location = Location.of(model_dir)
    return str(Path(location.path).resolve()) if location.is_local else location.uri


@dataclass(frozen=True)
class InferenceModel:
    """Everything the embed stages need of a model directory.

    Attributes:
        info: the typed ``seqae.json``.
        scorer: the onnxruntime session (or a ``NullScorer`` for capacity measurements).
        identity: what outputs made with this model depend on (model, ONNX file and its sha256).
        data: the input contract (the model's own unless overridden).
        batch_size: sequences per inference call.
        columns: what each output row holds after its key and passthrough columns
            (``seqae.io.OUTPUT_COLUMNS``: the mode's, the score with a threshold, those the run's
            options ask for, the lineage).
        threshold: the fitted threshold, if any (``score`` and ``is_anomaly``).
        step_scores: the per-timestamp output is written too (long layout).
        neighbours: windows are also scored by their distance to the nearest training window
            (``neighbours.onnx``; ``nearest_distance``, and ``window_distance_min`` per step).
    """

    info: ModelInfo
    scorer: Scorer
    identity: RunIdentity
    data: DataConfig
    batch_size: int
    columns: tuple[OutputColumn, ...]
    threshold: Threshold | None = None
    step_scores: bool = False
    neighbours: bool = False

    @classmethod
    def open(cls, model_dir: str | os.PathLike, config: EmbedConfig = EmbedConfig(), *,
             data_config: DataConfig | None = None, null_scorer: bool = False,
             neighbours: bool = True) -> InferenceModel:
        """Verify the ONNX file ``config`` asks for and open its session.

        Args:
            null_scorer: answer zeros instead of running the model (pipeline capacity only; the
                outputs are not embeddings).
            neighbours: open the model's bank of training windows where it has one (False: what
                needs no ``nearest_distance``, e.g. drift, skips its cost).

        Raises:
            ModelDirError, ChecksumError: see ``ModelArtifacts.open``.
            DeviceError: ``device="cuda"`` without a usable CUDA provider, or heavy nodes off the GPU.
        """
        onnx_file = config.session_options.scorer_file
        try:
            # The session hashes the bytes it is built from (one read); the null scorer reads nothing else.
            artifacts = ModelArtifacts.open(model_dir, (onnx_file,), checksums=null_scorer)
        except ModelDirError as exc:
            if (config.fp16 or config.int8) and "missing" in str(exc):
                flag, kind = ("--fp16", "fp16") if config.fp16 else ("--int8", "int8")
                parity = ModelInfo.read(model_dir).metadata.get("export", {}).get(f"{kind}_parity")
                if parity and parity.get("passed") is False:
                    raise ModelDirError(f"{exc}; export dropped it: its parity with the fp32 scorer was beyond "
                                        f"tolerance ({parity}); use the fp32 scorer") from exc
                raise ModelDirError(f"{exc}; {flag} needs it: run `seqae export {model_dir} {flag}`") from exc
            raise
        info = artifacts.info
        location = model_location(info)
        data = data_config or info.data
        if config.step_scores and data.layout != "long":
            raise ConfigError(f"step_scores: per-timestamp scores need the long layout; {info.where} was "
                              f"trained on the {data.layout} layout (its step_error column is per sequence)")
        threshold = Threshold.load(location)
        neighbours = neighbours and has_neighbours(info, data)
        if config.step_scores and neighbours and threshold is not None \
                and threshold.statistic_ != names.WINDOW_DISTANCE_MIN:
            log.warning("%s: steps are scored by %s, the statistic its step threshold was fitted on, not by the "
                        "bank's %s (the threshold predates the bank); re-run seqae threshold", info.where,
                        threshold.statistic_ or names.WINDOW_ERROR_MIN, names.WINDOW_DISTANCE_MIN)
        if config.step_scores and threshold is not None and threshold.statistic_ == names.WINDOW_DISTANCE_MIN \
                and not neighbours:
            raise ModelDirError(f"{info.where}: the step threshold was fitted on {names.WINDOW_DISTANCE_MIN}, the "
                                f"distances of a bank of training windows, but the model has no {names.NEIGHBOURS_ONNX} "
                                "(exported again without it?); re-run seqae threshold")
        columns = select_columns(info.model.mode_spec.columns, options=output_options(config),
                                 scored=threshold is not None, lineage=True, neighbours=neighbours)
        outputs = scorer_outputs(columns + (select_columns(steps=True, neighbours=neighbours)
                                            if config.step_scores else ()))
        if null_scorer:
            scorer: Scorer = NullScorer(outputs, info.model.embedding_dim)
        else:
            sha256 = {name: record.sha256 for name, record in info.files.items()}
            session = ScorerSession(location, config.session_options, sha256=sha256,
                                    outputs=[o for o in outputs if o != names.NEAREST_DISTANCE])
            scorer = session
            if neighbours:
                normalization = info.metadata.get("normalization") or {}
                scorer = WithNeighbours(session, NeighboursSession(
                    location, session.provider, config.session_options, window=int(data.window or 0),
                    mean=normalization.get("mean"), std=normalization.get("std"), sha256=sha256))
            if isinstance(session.num_features, int) and session.num_features != info.model.num_features:
                raise ModelDirError(f"{info.file(onnx_file)}: input values has {session.num_features} feature(s) but "
                                    f"{names.METADATA_FILE} says {info.model.num_features}; the two are from different "
                                    f"models. Re-run `seqae export {info.where}`")
        batch_size = config.batch_size or DEFAULT_BATCH.get(scorer.provider, config.read_batch_size)
        identity = _identity(info, config, artifacts.sha256(onnx_file), data, threshold)
        return cls(info, scorer, identity, data, batch_size, columns, threshold, config.step_scores, neighbours)

    @classmethod
    def shared(cls, model_dir: str | os.PathLike, config: EmbedConfig = EmbedConfig()) -> InferenceModel:
        """One ``InferenceModel`` per process for a model directory and run options, so that
        orchestrated shard tasks (threads or Ray workers) reuse one session across shards.

        Keyed on the identity read from ``seqae.json`` each call: a retrained or re-exported model
        in the same directory is opened afresh, never served from the old session.
        """
        identity = cls.identity_of(model_dir, config)
        key = (_place(model_dir), identity, config.session_options, config.batch_size,
               config.read_batch_size)
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = cls.open(model_dir, config)
                global _SESSIONS_OPENED
                _SESSIONS_OPENED += 1
            return _SHARED[key]

    @staticmethod
    def sessions_opened() -> int:
        """How many models ``shared`` has opened in this process (a Ray worker that reuses its
        session across shards reports 1 however many shards it ran)."""
        return _SESSIONS_OPENED

    @staticmethod
    def identity_of(model_dir: str | os.PathLike, config: EmbedConfig = EmbedConfig()) -> RunIdentity:
        """The identity ``open`` would give, from ``seqae.json`` alone (no checksum, no session)."""
        info = ModelInfo.read(model_dir)
        onnx_file = config.session_options.scorer_file
        if onnx_file not in info.files:
            raise ModelDirError(f"{info.where}: {onnx_file} was not exported; run `seqae export`")
        return _identity(info, config, info.files[onnx_file].sha256, info.data,
                         Threshold.load(model_location(info)))

    @property
    def num_features(self) -> int:
        return self.info.num_features

    @property
    def location(self) -> Location:
        """Where the model directory is (``model_location``)."""
        return model_location(self.info)

    @property
    def step_errors(self) -> bool:
        """The output carries ``step_error`` (``EmbedConfig.step_errors``)."""
        return any(column.name == names.STEP_ERROR for column in self.columns)

    def output_schema(self, key_fields: pa.Schema, passthrough: pa.Schema) -> pa.Schema:
        return output_schema(key_fields, passthrough, self.info.model.embedding_dim, self.columns)

    def step_scores_schema(self, input_schema: pa.Schema) -> pa.Schema:
        """The per-timestamp output's schema for a long-layout shard with ``input_schema``."""
        return step_scores_schema(input_schema.field(self.data.key_column), input_schema.field(self.data.time_column),
                                  scored=self.threshold is not None, lineage=True, neighbours=self.neighbours)
