"""Anomaly scores beyond the raw error: the held-out reference written at export, thresholds fitted
on normal data, and drift of new data against the reference. No TensorFlow, no Prefect.

The reference (``reference.parquet`` in the model directory) holds the reconstruction errors and
embeddings of the rows held out from training (the validation split, never trained on), scored by the
exported ONNX scorer: what normal looks like to this model. Thresholds default to fitting on it;
drift compares new data with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqae import names
from seqae.config import Device, DriftPolicy, EmbedConfig, SessionOptions
from seqae.data import RowFilter, SequenceBatch, ShardReader, empty_rejects, resolve_shards
from seqae.errors import SeqaeError
from seqae.infer.model import DEFAULT_BATCH, InferenceModel, has_neighbours
from seqae.infer.session import Scorer, ScorerSession
from seqae.infer.stages import ReadBatch, score
from seqae.modeldir import ModelInfo
from seqae.storage import Location, utc_now, write_bytes
from seqae.thresholds import NEIGHBOURS_STEP_STATISTIC, Threshold, ThresholdConfig, covering_runs

#: Rows kept in the reference at most (errors and embeddings; a few MB).
REFERENCE_ROWS = 20_000
#: A window this close to its nearest bank window (mean squared distance in standardised units, float32
#: noise included) is one of the bank's own windows (a copy of the training data that ``_refuse_training_data``
#: cannot tell by its fingerprint).
IN_BANK = 1e-5


def score_rows(scorer: Scorer, batch_size: int, batches: Iterator[tuple[np.ndarray, np.ndarray]],
               limit: int | None = None) -> dict[str, np.ndarray]:
    """Run ``scorer`` over ``(values, lengths)`` batches, ``batch_size`` sequences per call; the outputs
    concatenated (at most ``limit`` rows)."""
    parts: dict[str, list[np.ndarray]] = {}
    have = 0
    for values, lengths in batches:
        batch = SequenceBatch("", pa.table({}), pa.table({}), values, lengths, np.zeros(len(lengths), np.int64))
        for name, array in score(scorer, ReadBatch(batch, empty_rejects()), batch_size).outputs.items():
            parts.setdefault(name, []).append(array)
        have += len(lengths)
        if limit is not None and have >= limit:
            break
    if not parts:
        return {}
    return {name: _stack(arrays)[:limit] for name, arrays in parts.items()}


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate along rows; per-step outputs (``step_error``) zero-padded to the widest batch's
    time axis, as ``score`` pads them within a batch (each read batch is as wide as its longest row)."""
    if arrays[0].ndim < 2 or len({a.shape[1] for a in arrays}) == 1:
        return np.concatenate(arrays)
    width = max(a.shape[1] for a in arrays)
    return np.concatenate([np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays])


def iter_dataset(model: InferenceModel, data: str | list[str], row_filter: str | None = None,
                 read_batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(values, lengths)`` of the accepted rows at ``data`` (a location, or a list of shard
    locations) under the model's contract."""
    flt = RowFilter.parse(row_filter) if row_filter else None
    shards = [s for location in ([data] if isinstance(data, str) else data) for s in resolve_shards(location)]
    for shard in shards:
        for batch, _ in ShardReader(shard, model.data, batch_size=read_batch_size, row_filter=flt,
                                    num_features=model.num_features):
            if len(batch):
                yield batch.values, batch.lengths


def write_reference(model_dir: str | os.PathLike, batches: Iterator[tuple[np.ndarray, np.ndarray]],
                    source: str) -> dict[str, Any]:
    """Score held-out rows with the model directory's exported scorer (``scorer.onnx``, on the CPU) and
    write ``reference.parquet`` there. Reads no ``seqae.json``: export scores the reference in its
    staging folder before it writes one."""
    scorer = ScorerSession(model_dir, SessionOptions(device="cpu"))
    outputs = score_rows(scorer, DEFAULT_BATCH[scorer.provider], batches, REFERENCE_ROWS)
    if not outputs:
        raise SeqaeError(f"{model_dir}: no held-out row to build the reference from")
    embedding = np.ascontiguousarray(outputs[names.EMBEDDING], np.float32)
    columns = {names.RECON_ERROR: pa.array(outputs[names.RECON_ERROR].astype(np.float32)),
               names.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(embedding.reshape(-1)), embedding.shape[1])}
    if names.PRED_ERROR in outputs:
        columns[names.PRED_ERROR] = pa.array(outputs[names.PRED_ERROR].astype(np.float32))
    table = pa.table(columns).replace_schema_metadata(
        {names.PARQUET_METADATA_KEY: json.dumps({"source": source, "created_at": utc_now()})})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes(Path(model_dir) / names.REFERENCE_FILE, sink.getvalue().to_pybytes())
    return {"rows": table.num_rows, "source": source,
            "recon_error_median": float(np.median(outputs[names.RECON_ERROR]))}


def read_reference(model_dir: str | os.PathLike) -> pa.Table:
    """The model's held-out reference (a local model directory or one on an object store)."""
    file = Location.of(model_dir).join(names.REFERENCE_FILE)
    if not file.is_file():
        raise SeqaeError(f"{model_dir}: {names.REFERENCE_FILE} is missing; re-run `seqae export {model_dir}` "
                         "(it scores the held-out rows), or pass --data")
    return pq.read_table(file.path, filesystem=file.filesystem)


def read_neighbours_reference(model_dir: str | os.PathLike) -> tuple[np.ndarray, int]:
    """The training windows' distances to the bank without the windows that overlap them
    (``neighbours.parquet``, written by export beside ``neighbours.onnx``), in series order with a NaN
    between runs, and their stride in steps: what the step threshold of a model with a bank is fitted
    on by default."""
    file = Location.of(model_dir).join(names.NEIGHBOURS_REFERENCE_FILE)
    if not file.is_file():
        raise SeqaeError(f"{model_dir}: {names.NEIGHBOURS_REFERENCE_FILE} is missing beside {names.NEIGHBOURS_ONNX}; "
                         f"re-run `seqae export {model_dir}`, or pass --data")
    table = pq.read_table(file.path, filesystem=file.filesystem)
    meta = json.loads((table.schema.metadata or {}).get(names.PARQUET_METADATA_KEY.encode(), b"{}"))
    if not isinstance(meta.get("stride"), int) or names.NEAREST_DISTANCE not in table.column_names:
        raise SeqaeError(f"{file.uri if not file.is_local else file.path}: expected a column {names.NEAREST_DISTANCE} and "
                         f"the windows' stride in its metadata, as seqae export writes them, found columns "
                         f"{', '.join(table.column_names)} and metadata {sorted(meta)}; re-run `seqae export {model_dir}`")
    return table.column(names.NEAREST_DISTANCE).to_numpy().astype(np.float64), meta["stride"]


def _refuse_training_data(info: ModelInfo, data: str) -> None:
    """A step threshold on distances cannot be fitted on the bank's own data (its windows are in the
    bank): ``data`` whose shards are training shards (the same file, by fingerprint) is refused."""
    trained = {s.get("fingerprint") for s in info.metadata.get("training", {}).get("shards", []) if isinstance(s, dict)}
    for shard in resolve_shards(data):
        if shard.fingerprint in trained:
            raise SeqaeError(f"{shard.uri}: a shard the model trained on, whose windows are in its bank "
                             f"({names.NEIGHBOURS_ONNX}); a step threshold on their distances would flag most new normal "
                             "steps. Fit on normal data the model did not train on, or on the bank's reference (no --data)")


def fit_threshold(model_dir: str | os.PathLike, config: ThresholdConfig = ThresholdConfig(), *,
                  data: str | None = None, row_filter: str | None = None, device: Device = "auto") -> Threshold:
    """Fit a threshold on the errors of ``data`` (rows the user says are normal, or all rows with
    ``config.contamination``), or by default on the model's held-out reference, and save it as
    ``threshold.json`` in the model directory; ``embed`` then writes ``score`` and ``is_anomaly``.

    Args:
        model_dir: an exported model directory (a path or a URI).
        config: the method (``auto``, ``pot`` or ``percentile``), the false-alarm rate and the rest.
        data: rows to fit on instead of the held-out reference (a path, URI or glob).
        row_filter: the normal rows of ``data``, e.g. ``"label == 1"``.
        device: where the scorer runs when ``data`` is given.

    Returns:
        The fitted ``Threshold`` (``threshold_``, ``n_samples_``), saved as ``threshold.json``.

    Raises:
        SeqaeError: too few errors for the method (it says how many and what to pass instead); an
            input file that cannot be read (named in one line).
    """
    info = ModelInfo.read(model_dir)
    spacing = info.data.effective_stride  # of the windows the step scores are made of
    if data is None:
        errors = read_reference(model_dir).column(names.RECON_ERROR).to_numpy()
        distances, spacing = read_neighbours_reference(model_dir) if has_neighbours(info, info.data) else (None, 1)
    else:
        model = InferenceModel.open(model_dir, EmbedConfig(device=device))
        outputs = score_rows(model.scorer, model.batch_size, iter_dataset(model, data, row_filter))
        errors = outputs.get(names.RECON_ERROR, np.zeros(0))
        distances = outputs.get(names.NEAREST_DISTANCE)
    where = data if data is not None else (f"the held-out reference and {names.NEIGHBOURS_REFERENCE_FILE}"
                                           if has_neighbours(info, info.data) else "the held-out reference")
    by_distance = distances is not None and has_neighbours(info, info.data) and bool(info.data.window)
    if by_distance and data is not None and distances is not None:
        _refuse_training_data(info, data)
        in_bank = int((np.asarray(distances) <= IN_BANK).sum())
        if in_bank > len(distances) / 2:
            raise SeqaeError(f"{data}: {in_bank} of {len(distances)} windows are windows of the model's bank "
                             f"({names.NEIGHBOURS_ONNX}: distance {IN_BANK:g} or less), i.e. its training data; a step "
                             "threshold on their distances would flag most new normal steps. Fit on normal data the "
                             "model did not train on, or on the held-out reference (no --data)")
    try:
        threshold = Threshold(config).fit(errors)
        if by_distance:  # the step score of a model with a bank: the least distance of the covering windows
            threshold.fit_steps(covering_runs(int(info.data.window or 1), spacing), distances,
                                NEIGHBOURS_STEP_STATISTIC)
    except SeqaeError as exc:
        raise SeqaeError(f"{exc} (from {where}); pass --data with rows you know are normal (--filter), or "
                         "use more rows") from exc
    threshold.save(model_dir)
    return threshold


def fit_threshold_from_reference(model_dir: str | os.PathLike,
                                 config: ThresholdConfig = ThresholdConfig()) -> tuple[Threshold | None, str]:
    """What a pipeline does after export: fit on the held-out reference when it holds enough rows;
    otherwise leave the model without a threshold and say why (``embed`` then writes no score)."""
    try:
        return fit_threshold(model_dir, config), "fitted on the held-out reference"
    except SeqaeError as exc:
        return None, f"no threshold: {exc}"


def drift(model_dir: str | os.PathLike, data: str | list[str], *, row_filter: str | None = None,
          alpha: float = DriftPolicy.alpha,
          device: Device = "auto", limit: int = REFERENCE_ROWS) -> dict[str, Any]:
    """Compare the errors and embeddings of ``data`` with the model's held-out reference.

    Two-sample Kolmogorov-Smirnov tests (``scipy.stats.ks_2samp``): one on the reconstruction
    errors, one per embedding dimension with a Bonferroni correction. The data drifted when either
    rejects at ``alpha``. Also reports effect sizes beside the p-values, which a few hundred rows make
    small on any difference: the KS statistics (the largest gap between the two distributions, 0 to
    1; for the embedding the largest over its dimensions), the shift of the median error, and the
    Wasserstein distance of the errors relative to the reference's interquartile range.
    ``seqae.drift.DriftPolicy`` (the module, used by the flows) decides from these whether a drift is
    worth a retrain.

    Returns:
        A dict: ``drifted``, ``rows``, ``reference_rows``, ``alpha`` and one entry per test
        (``recon_error``, ``embedding``) with its statistic, p-value and effect sizes.

    Raises:
        SeqaeError: no accepted row in ``data``; the model has no reference (export it again); an
            input file that cannot be read (named in one line; unlike ``embed``, nothing is set aside).
    """
    from scipy.stats import ks_2samp, wasserstein_distance

    reference = read_reference(model_dir)
    model = InferenceModel.open(model_dir, EmbedConfig(device=device), neighbours=False)
    outputs = score_rows(model.scorer, model.batch_size, iter_dataset(model, data, row_filter), limit)
    if not outputs:
        raise SeqaeError(f"{data}: no accepted row to compare with the reference")
    ref_err = reference.column(names.RECON_ERROR).to_numpy()
    new_err = outputs[names.RECON_ERROR]
    errors = ks_2samp(ref_err, new_err)
    ref_emb = np.stack(reference.column(names.EMBEDDING).to_numpy(zero_copy_only=False))
    new_emb = outputs[names.EMBEDDING]
    tests = [ks_2samp(ref_emb[:, d], new_emb[:, d]) for d in range(ref_emb.shape[1])]
    per_dim = np.array([t.pvalue for t in tests])
    emb_p = float(min(per_dim.min() * len(per_dim), 1.0))  # Bonferroni
    drifted = bool(errors.pvalue < alpha or emb_p < alpha)
    q1, q3 = np.percentile(ref_err, [25, 75])
    spread = float(q3 - q1) or float(np.std(ref_err)) or 1.0
    distance = float(wasserstein_distance(ref_err, new_err))
    return {"drifted": drifted, "alpha": alpha, "rows": int(len(new_err)), "reference_rows": int(len(ref_err)),
            "recon_error": {"test": "ks_2samp", "statistic": round(float(errors.statistic), 6),
                            "p_value": float(errors.pvalue), "reference_median": float(np.median(ref_err)),
                            "median": float(np.median(new_err)), "wasserstein": round(distance, 6),
                            "wasserstein_relative": round(distance / spread, 6)},
            "embedding": {"test": "ks_2samp per dimension, Bonferroni", "dimensions": int(len(per_dim)),
                          "p_value": emb_p, "statistic": round(float(max(t.statistic for t in tests)), 6),
                          "dimensions_below_alpha": int((per_dim * len(per_dim) < alpha).sum())},
            "verdict": "drifted" if drifted else "no drift", "data": data, "checked_at": utc_now()}
