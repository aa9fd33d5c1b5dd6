"""Point-anomaly evaluation of the long layout: per-time-step scores against per-time-step labels.

The score of a step is the statistic its step threshold names (``seqae.thresholds.step_score``):
``window_distance_min``, the least nearest-training-window distance of the windows covering it, for a
model exported with its bank of training windows (``neighbours.onnx``), else ``window_error_min``, the
least error of those windows (see ``seqae.infer.steps``); ROC-AUC is also given for
``window_error_min`` where it is not the score, ``window_error_mean`` (their mean, the score before
2026-12-04) and for ``step_error_mean`` and ``step_error_max``, the covering windows' errors at the
step itself. Metrics, over every scored step:

- ROC-AUC and PR-AUC (scikit-learn);
- precision, recall, F1 and the share of normal steps flagged at the stored *step* threshold (fitted
  on held-out step scores, ``seqae.thresholds``), plain and *point-adjusted* (Xu et al., WWW 2018:
  a labelled anomalous segment counts as caught, all its steps, when any of its steps is flagged; the
  usual protocol of Numenta/Yahoo/SMD-style benchmarks, which flatters detectors: both are reported);
- the UCR anomaly archive's hit rate (Wu & Keogh, 2021): a series with a labelled anomaly is a hit when
  its highest-scored step lies within ``margin`` steps (100) of a labelled anomalous step.

No TensorFlow, no Prefect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqae import names
from seqae.config import Device, EmbedConfig
from seqae.data import ShardReader, key_runs, resolve_shards
from seqae.errors import SeqaeError
from seqae.infer.model import InferenceModel
from seqae.infer.stages import ShardInput, score
from seqae.infer.steps import WINDOW_DISTANCE_MIN, WINDOW_ERROR_MEAN, WINDOW_ERROR_MIN, StepScores
from seqae.thresholds import STEP_STATISTICS, step_score, step_statistic

#: The UCR anomaly archive's tolerance around a labelled anomaly, in steps.
UCR_MARGIN = 100
#: Series drawn in the plot at most (those with labelled anomalies first).
PLOTTED_SERIES = 3
#: The baseline's step score, a column of the joined table only.
BASELINE = "_baseline"


@dataclass
class ScoredSteps:
    """Every scored, labelled step of long-layout data, in series order then time order."""

    keys: np.ndarray
    times: np.ndarray
    values: np.ndarray  # the first feature, raw units
    window_mean: np.ndarray  # window_error_mean
    window_min: np.ndarray  # window_error_min
    mean: np.ndarray  # step_error_mean
    max: np.ndarray  # step_error_max
    anomalous: np.ndarray  # bool, from the labels
    steps_in: int  # steps read with a key and a time (scored or not)
    key_column: str
    time_column: str
    feature: str
    unlabelled: int = 0  # scored steps whose label is null: left out of every metric
    anomalous_unscored: int = 0  # labelled anomalous steps that no accepted window covers
    label_values: tuple = ()  # the distinct labels seen (at most 10), for messages
    step_threshold: float | None = None  # the model's step threshold (None: none stored)
    windows: np.ndarray | None = None  # int32: how many windows covered each step
    statistic: str = WINDOW_ERROR_MIN  # the score: what the model's step threshold applies to
    adjusted: np.ndarray | None = None  # the score as the step threshold reads it (seqae.thresholds.step_score)
    baseline: np.ndarray | None = None  # the nearest-training-window baseline's step score (seqae.baseline)
    baseline_info: dict | None = None  # what the baseline was built from (NearestWindows.describe)
    distance_min: np.ndarray | None = None  # window_distance_min (a model with a bank of training windows)

    @property
    def score(self) -> np.ndarray:
        """Each step's anomaly score: ``adjusted``; a ScoredSteps made by hand without it, ``statistic``'s column."""
        if self.adjusted is not None:
            return self.adjusted
        return self.raw

    @property
    def raw(self) -> np.ndarray:
        """``statistic``'s column, without the end-of-series scaling (``Threshold.adjust_steps``)."""
        if self.statistic == WINDOW_DISTANCE_MIN and self.distance_min is not None:
            return self.distance_min
        return self.window_min if self.statistic == WINDOW_ERROR_MIN else self.window_mean


def normal_scalar(normal_value: Any, label_type: pa.DataType, label_column: str, where: str,
                  found: pa.Array | pa.ChunkedArray) -> pa.Scalar:
    """``normal_value`` as a scalar of the label column's type (``--normal-value 0`` on a string column
    means ``"0"``), or a one-line error naming the column, its type and the labels found."""
    try:
        return pa.scalar(normal_value).cast(label_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        seen = ", ".join(repr(v) for v in pc.unique(found).to_pylist()[:10])
        raise SeqaeError(f"{where}: --normal-value {normal_value!r} is not a value of column '{label_column}' "
                         f"({label_type}); expected one of the labels found: {seen}") from None


def score_steps(model_dir: str | os.PathLike, data: str, label_column: str, normal_value: Any, *,
                device: Device = "auto", read_batch_size: int = 16384,
                baseline_data: str | None = None) -> ScoredSteps:
    """Score the long-layout shards at ``data`` per time step and join each step's label.

    ``baseline_data``: normal long-layout data of the model's contract; each window is also scored by
    its distance to the nearest window of it (``seqae.baseline``), spread to steps as the model's
    score is (``ScoredSteps.baseline``).
    """
    model = InferenceModel.open(model_dir, EmbedConfig(device=device, step_scores=True))
    cfg = model.data
    features = tuple(cfg.feature_columns or ())  # the long layout always names them
    if label_column in (cfg.key_column, cfg.time_column, *features):
        raise SeqaeError(f"--label-column {label_column!r} is the model's key, time or a feature column; expected a "
                         "column of labels per time step")
    shards = resolve_shards(data)
    threshold = model.threshold
    statistic = step_statistic(threshold, model.neighbours)  # what the baseline is spread by, as the model's score
    least = STEP_STATISTICS[statistic] is np.min
    bank = None  # built after the cheap checks: it reads all of baseline_data
    if baseline_data is not None:
        from seqae.baseline import NearestWindows

        for shard in shards:  # footers only: a bad file or a missing label column fails before the bank is read
            _require_label(shard.uri, label_column, ShardReader(shard, cfg, num_features=model.num_features).schema.names)
        bank = NearestWindows.build(baseline_data, cfg, model.num_features, model.info.metadata["normalization"],
                                    read_batch_size=read_batch_size)
        baseline_anomalous = _labelled_anomalous(baseline_data, label_column, normal_value)
    parts = []
    steps_in = unlabelled = anomalous_unscored = 0
    label_values: set = set()
    for shard in shards:
        source = ShardInput(shard, model, read_batch_size)
        _require_label(shard.uri, label_column, source.reader.schema.names)
        fold = StepScores(source.reader.schema.field(cfg.key_column).type, distances=model.neighbours)
        base_fold = StepScores(source.reader.schema.field(cfg.key_column).type)
        rows, base_rows = [], []
        for read in source:
            if len(read.batch):
                outputs = score(model.scorer, read, model.batch_size).outputs
                rows.append(fold.add(read.batch, outputs[names.STEP_ERROR], outputs[names.RECON_ERROR],
                                     outputs.get(names.NEAREST_DISTANCE)))
                if bank is not None:  # the same windows, folded the same way: the same steps in the same order
                    near = bank.distances(read.batch.values, read.batch.lengths)
                    base_rows.append(base_fold.add(read.batch, np.zeros(read.batch.values.shape[:2]), near))
        rows.append(fold.finish())
        base_rows.append(base_fold.finish())
        scored = pa.table({
            cfg.key_column: pa.concat_arrays([r.keys for r in rows]),
            cfg.time_column: pa.array(np.concatenate([r.times for r in rows])).cast(
                source.reader.schema.field(cfg.time_column).type),
            WINDOW_ERROR_MEAN: np.concatenate([r.window_mean for r in rows]),
            WINDOW_ERROR_MIN: np.concatenate([r.window_min for r in rows]),
            names.STEP_ERROR_MEAN: np.concatenate([r.mean for r in rows]),
            names.STEP_ERROR_MAX: np.concatenate([r.max for r in rows]),
            names.WINDOWS: np.concatenate([r.windows for r in rows]),
            "_order": np.arange(sum(len(r) for r in rows)),
        })
        if model.neighbours:
            scored = scored.append_column(WINDOW_DISTANCE_MIN, pa.array(np.concatenate([r.distance_min for r in rows])))
        if bank is not None:  # spread to steps by the model's statistic (the least or the mean over the windows)
            spread = [r.window_min if least else r.window_mean for r in base_rows]
            scored = scored.append_column(BASELINE, pa.array(np.concatenate(spread)))
        with shard.open() as handle:
            labels = pq.read_table(handle, columns=[cfg.key_column, cfg.time_column, label_column,
                                                    features[0]])
        labels = labels.filter(pc.and_(pc.is_valid(labels.column(cfg.key_column)),
                                       pc.is_valid(labels.column(cfg.time_column))))
        steps_in += labels.num_rows
        label = labels.column(label_column)
        normal = normal_scalar(normal_value, label.type, label_column, shard.uri, label)
        label_values |= set(pc.unique(label).to_pylist()[:10])
        joined = scored.join(labels, [cfg.key_column, cfg.time_column], join_type="inner").sort_by("_order")
        is_anomalous = pc.fill_null(pc.not_equal(label, normal), False)
        anomalous_unscored += int(pc.sum(is_anomalous).as_py() or 0)
        valid = pc.is_valid(joined.column(label_column))
        unlabelled += joined.num_rows - int(pc.sum(valid).as_py() or 0)
        joined = joined.filter(valid)
        anomalous = pc.not_equal(joined.column(label_column), normal).to_numpy(zero_copy_only=False).astype(bool)
        anomalous_unscored -= int(anomalous.sum())
        parts.append((joined, anomalous))
    if not parts or not sum(len(a) for _, a in parts):
        raise SeqaeError(f"{data}: no labelled time step was scored (too few steps for one window, or every label "
                         "null?)")
    table = pa.concat_tables([t for t, _ in parts])
    steps = threshold.steps_ if threshold is not None else None
    windows = table.column(names.WINDOWS).to_numpy()
    columns = {name: table.column(name).to_numpy() for name in (WINDOW_ERROR_MIN, WINDOW_ERROR_MEAN,
                                                                WINDOW_DISTANCE_MIN) if name in table.column_names}
    statistic, scores = step_score(threshold, columns, windows)
    baseline = table.column(BASELINE).to_numpy() if bank is not None else None
    return ScoredSteps(table.column(cfg.key_column).to_numpy(zero_copy_only=False),
                       table.column(cfg.time_column).to_numpy(zero_copy_only=False),
                       table.column(features[0]).to_numpy(zero_copy_only=False).astype(np.float64),
                       columns[WINDOW_ERROR_MEAN], columns[WINDOW_ERROR_MIN],
                       table.column(names.STEP_ERROR_MEAN).to_numpy(),
                       table.column(names.STEP_ERROR_MAX).to_numpy(), np.concatenate([a for _, a in parts]), steps_in,
                       cfg.key_column, cfg.time_column, features[0], unlabelled, anomalous_unscored,
                       tuple(sorted(label_values, key=str))[:10], steps.threshold_ if steps is not None else None,
                       windows, statistic, scores, baseline,
                       {**bank.describe(), "anomalous_steps": baseline_anomalous} if bank is not None else None,
                       columns.get(WINDOW_DISTANCE_MIN))


def _labelled_anomalous(data: str, label_column: str, normal_value: Any) -> int | None:
    """Steps of ``data`` whose ``label_column`` says anomalous (None: no shard has the column)."""
    found = None
    for shard in resolve_shards(data):
        with shard.open() as handle:
            parquet = pq.ParquetFile(handle)
            if label_column not in parquet.schema_arrow.names:
                continue
            label = parquet.read(columns=[label_column]).column(label_column)
        normal = normal_scalar(normal_value, label.type, label_column, shard.uri, label)
        found = (found or 0) + int(pc.sum(pc.fill_null(pc.not_equal(label, normal), False)).as_py() or 0)
    return found


def _require_label(uri: str, label_column: str, found: list[str]) -> None:
    if label_column not in found:
        raise SeqaeError(f"{uri}: column '{label_column}' is missing; expected a label per time step, "
                         f"found {', '.join(found)}")


def segments(anomalous: np.ndarray, bounds: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of consecutive anomalous steps, never across two series."""
    out = []
    for a, b in bounds:
        flags = np.r_[False, anomalous[a:b], False].astype(np.int8)
        edges = np.flatnonzero(np.diff(flags))
        out += [(a + int(s), a + int(e)) for s, e in zip(edges[::2], edges[1::2])]
    return out


def point_adjust(flagged: np.ndarray, anomalous: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Flags with every labelled segment that has one flagged step flagged whole (Xu et al., 2018)."""
    adjusted = flagged.copy()
    for a, b in segments(anomalous, bounds):
        if flagged[a:b].any():
            adjusted[a:b] = True
    return adjusted


def ucr_hits(scores: np.ndarray, anomalous: np.ndarray, bounds: list[tuple[int, int]],
             margin: int = UCR_MARGIN) -> list[dict[str, Any]]:
    """Per series with a labelled anomaly: where its highest score is and whether that is within
    ``margin`` steps of a labelled anomalous step (steps counted in the series' order)."""
    out = []
    for a, b in bounds:
        where = np.flatnonzero(anomalous[a:b])
        if not len(where):
            continue
        top = int(np.argmax(scores[a:b]))
        distance = int(np.abs(where - top).min())
        out.append({"start": a, "top": top, "anomaly": [int(where[0]), int(where[-1])],
                    "segments": int(1 + (np.diff(where) > 1).sum()), "distance": distance, "hit": distance <= margin})
    return out


def point_metrics(scored: ScoredSteps, threshold: float | None, margin: int = UCR_MARGIN) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, F1 (plain and point-adjusted) at the threshold and the UCR hit rate over the
    scored steps; with one class only, the AUCs are None and ``undefined`` says why, with the counts.

    Args:
        threshold: flags steps whose score is above it when the model holds no step
            threshold (``scored.step_threshold``, which is used when there is one): a window
            threshold (a ``threshold.json`` written before step thresholds), with a warning that its
            false-alarm rate does not hold per step.
    """
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    y, s = scored.anomalous, scored.score.astype(np.float64)
    bounds = key_runs(scored.keys)
    warnings = []
    fitted_on = ("step scores of normal windows against the bank" if scored.statistic == WINDOW_DISTANCE_MIN
                 else "held-out step scores")
    if scored.step_threshold is not None:
        threshold = scored.step_threshold
    elif threshold is not None:
        fitted_on = "held-out window errors"
        warnings.append("the threshold was fitted on window errors, not on step scores (threshold.json has no step "
                        "threshold: written before seqae fitted one), so its false-alarm rate does not hold per step; "
                        "re-run seqae threshold")
    if y.mean() > 0.5:
        warnings.append(f"{int(y.sum())} of {len(y)} steps ({y.mean():.0%}) are labelled anomalous: is --normal-value "
                        "the label of the normal steps (it is 1 unless given)?")
    if scored.anomalous_unscored:
        warnings.append(f"{scored.anomalous_unscored} labelled anomalous step(s) have no score (no accepted window "
                        "covers them, e.g. a NaN in their window) and are left out: recall is over the scored ones")
    if scored.unlabelled:
        warnings.append(f"{scored.unlabelled} scored step(s) have a null label and are left out")
    result: dict[str, Any] = {
        "steps": int(len(y)), "steps_unscored": int(scored.steps_in - len(y) - scored.unlabelled),
        "steps_unlabelled": scored.unlabelled, "anomalous_steps": int(y.sum()),
        "anomalous_steps_unscored": scored.anomalous_unscored,
        "series": len(bounds), "segments": len(segments(y, bounds)), "score": scored.statistic,
    }
    if y.all() or not y.any():
        result.update(roc_auc=None, pr_auc=None, roc_auc_of_window_error_min=None, roc_auc_of_window_error_mean=None,
                      roc_auc_of_step_error_mean=None, roc_auc_of_max=None, undefined=(
            f"ROC-AUC and PR-AUC are undefined: the labels have one class only ({int(y.sum())} of {len(y)} scored "
            f"steps are anomalous; labels found: {', '.join(repr(v) for v in scored.label_values)}): is "
            "--normal-value the label of normal steps?"))
    else:
        result.update(roc_auc=round(float(roc_auc_score(y, s)), 4), pr_auc=round(float(average_precision_score(y, s)), 4),
                      roc_auc_of_window_error_min=round(float(roc_auc_score(y, scored.window_min.astype(np.float64))), 4),
                      roc_auc_of_window_error_mean=round(float(roc_auc_score(y, scored.window_mean.astype(np.float64))), 4),
                      roc_auc_of_step_error_mean=round(float(roc_auc_score(y, scored.mean.astype(np.float64))), 4),
                      roc_auc_of_max=round(float(roc_auc_score(y, scored.max.astype(np.float64))), 4))
    if scored.baseline is not None:
        b = scored.baseline.astype(np.float64)
        raw = scored.raw.astype(np.float64)
        result["baseline"] = {**(scored.baseline_info or {}), "spread": scored.statistic,
                              "roc_auc": None, "pr_auc": None, "model_roc_auc_unscaled": None,
                              "hit_rate": _hit_rate(ucr_hits(b, y, bounds, margin))}
        if result["baseline"].get("anomalous_steps"):
            warnings.append(f"the baseline data holds {result['baseline']['anomalous_steps']} step(s) labelled anomalous "
                            "(the same label column): its bank is meant to be normal data, e.g. what the model "
                            "trained on, and windows over anomalies make anomalies look normal")
        if result["roc_auc"] is not None:
            # model_roc_auc_unscaled: the model's statistic without the end-of-series scaling to its own
            # threshold (Threshold.adjust_steps), which the baseline has no counterpart of
            result["baseline"].update(roc_auc=round(float(roc_auc_score(y, b)), 4),
                                      pr_auc=round(float(average_precision_score(y, b)), 4),
                                      model_roc_auc_unscaled=round(float(roc_auc_score(y, raw)), 4))
            if result["baseline"]["roc_auc"] > result["roc_auc"]:
                warnings.append(f"the nearest-training-window baseline ranks the anomalous steps better than the model "
                                f"(step ROC-AUC {result['baseline']['roc_auc']} against {result['roc_auc']}): on data "
                                "like this the model's step score is the weaker detector; the baseline's step scores "
                                "are ScoredSteps.baseline of seqae.points.score_steps (seqae embed does not write "
                                "them; a model exported with its bank of training windows, the default, scores "
                                "steps by that distance)")
    if threshold is not None:
        flagged = s > threshold
        for name, pred in (("at_threshold", flagged), ("point_adjusted", point_adjust(flagged, y, bounds))):
            p, r, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
            result[name] = {"threshold": threshold, "fitted_on": fitted_on, "precision": round(float(p), 4),
                            "recall": round(float(r), 4), "f1": round(float(f1), 4), "flagged_steps": int(pred.sum())}
        # What the rate asked of the threshold promises: the share of normal steps flagged.
        result["at_threshold"]["false_alarms_normal_steps"] = (round(float(flagged[~y].mean()), 5) if (~y).any()
                                                               else None)
    hits = ucr_hits(s, y, bounds, margin)
    for h in hits:  # positions among the series' scored steps -> times
        start = h.pop("start")
        h["series"] = json_value(scored.keys[start])
        h["top_time"] = json_value(scored.times[start + h.pop("top")])
        h["anomaly_times"] = [json_value(scored.times[start + i]) for i in h.pop("anomaly")]
        h["distance_steps"] = h.pop("distance")
    result["ucr"] = {"margin": margin, "series_with_anomaly": len(hits), "hit_rate": _hit_rate(hits),
                     "per_series": hits[:50]}
    result["warnings"] = warnings
    return result


def _hit_rate(hits: list[dict]) -> float | None:
    return round(sum(h["hit"] for h in hits) / len(hits), 4) if hits else None


def json_value(value):
    """A numpy scalar as JSON can hold it (times as ISO text)."""
    if isinstance(value, np.datetime64):
        return str(value)
    return value.item() if isinstance(value, np.generic) else value


def plot_series(scored: ScoredSteps, threshold: float | None, out: Path) -> str:
    """The series (first feature), their score and the labelled ranges: ``series_scores.png``; the
    line is the model's step threshold, or ``threshold`` where it has none (as ``point_metrics``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if scored.step_threshold is not None:
        threshold = scored.step_threshold
    bounds = key_runs(scored.keys)
    bounds = sorted(bounds, key=lambda ab: not scored.anomalous[ab[0]:ab[1]].any())[:PLOTTED_SERIES]
    fig, axes = plt.subplots(2 * len(bounds), 1, figsize=(10, 3.2 * len(bounds)), dpi=100, squeeze=False,
                             sharex=False)
    for i, (a, b) in enumerate(bounds):
        top, bottom = axes[2 * i, 0], axes[2 * i + 1, 0]
        x = scored.times[a:b]  # real times: steps without a score leave a visible gap
        top.plot(x, scored.values[a:b], lw=0.6)
        bottom.plot(x, scored.score[a:b], lw=0.6, c="tab:red", label=scored.statistic)
        if threshold is not None:
            bottom.axhline(threshold, c="k", ls="--", lw=0.8, label="threshold")
        for s, e in segments(scored.anomalous[a:b], [(0, b - a)]):
            for ax in (top, bottom):
                ax.axvspan(x[s], x[e - 1], color="orange", alpha=0.35, lw=1.5, ec="orange")
        top.set_title(f"{scored.key_column} = {json_value(scored.keys[a])}: {scored.feature} (labelled anomalies shaded)",
                      fontsize=9)
        bottom.set(yscale="log", ylabel="score", xlabel=scored.time_column)
        bottom.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = out / "series_scores.png"
    fig.savefig(path)
    plt.close(fig)
    return path.name


def markdown(report: dict[str, Any]) -> str:
    m = report["points"]
    lines = [f"# seqae point-anomaly evaluation: {report['data']}", "",
             f"Model `{report['model']}`, labels per time step in `{report['label_column']}` (normal: "
             f"{report['normal_value']!r}); {m['steps']} scored steps ({m['steps_unscored']} with no score: no "
             f"accepted window covers them) in {m['series']} series, {m['anomalous_steps']} anomalous steps in {m['segments']} "
             f"segment(s); score `{m['score']}`; {report['created_at']}.", "",
             *([m["undefined"], ""] if m.get("undefined") else []),
             "| metric | value |", "|---|---:|", f"| ROC-AUC (steps) | {m['roc_auc']} |",
             f"| PR-AUC (steps) | {m['pr_auc']} |",
             *([f"| ROC-AUC of `window_error_min` | {m['roc_auc_of_window_error_min']} |"]
               if m["score"] != WINDOW_ERROR_MIN and "roc_auc_of_window_error_min" in m else []),
             *([f"| ROC-AUC of `window_error_mean` | {m['roc_auc_of_window_error_mean']} |"]
               if m["score"] != WINDOW_ERROR_MEAN else []),  # a threshold fitted before: the score itself
             f"| ROC-AUC of `step_error_mean` | {m['roc_auc_of_step_error_mean']} |",
             f"| ROC-AUC of `step_error_max` | {m['roc_auc_of_max']} |",
             f"| UCR hit rate (top score within {m['ucr']['margin']} steps) | {m['ucr']['hit_rate']} "
             f"({m['ucr']['series_with_anomaly']} series) |"]
    if m.get("baseline", {}).get("roc_auc") is not None:
        b = m["baseline"]
        lines += [f"| baseline, nearest training window: ROC-AUC (steps) | {b['roc_auc']} |",
                  f"| baseline: PR-AUC (steps) | {b['pr_auc']} |",
                  f"| baseline: UCR hit rate | {b['hit_rate']} |",
                  f"| the model's `{m['score']}` without the end-of-series scaling, as the baseline is spread: "
                  f"ROC-AUC (steps) | {b['model_roc_auc_unscaled']} |"]
    for name, title in (("at_threshold", "at the threshold"), ("point_adjusted", "point-adjusted")):
        if name in m:
            t = m[name]
            lines.append(f"| F1 {title} (precision {t['precision']}, recall {t['recall']}, {t['flagged_steps']} "
                         f"steps flagged) | {t['f1']} |")
    if "at_threshold" in m and m["at_threshold"]["false_alarms_normal_steps"] is not None:
        t = m["at_threshold"]
        lines.append(f"| normal steps flagged (threshold {t['threshold']:.4g}, fitted on {t['fitted_on']}) | "
                     f"{t['false_alarms_normal_steps']:.2%} |")
    if "at_threshold" not in m:
        lines += ["", "No threshold stored with the model (`seqae threshold`): no F1."]
    lines += ["", "| series | top-scored time | labelled anomaly (times) | distance (steps) | hit |",
              "|---|---:|---|---:|---|"]
    lines += [f"| {h['series']} | {h['top_time']} | {h['anomaly_times'][0]}..{h['anomaly_times'][1]}"
              f"{f' ({n} segments; the distance is to the nearest labelled step)' if (n := h['segments']) > 1 else ''} | "
              f"{h['distance_steps']} | {'yes' if h['hit'] else 'no'} |" for h in m["ucr"]["per_series"]]
    if "baseline" in m:
        b = m["baseline"]
        kept = "all of them" if b["bank_stride"] == 1 else f"every {b['bank_stride']}th of them"
        lines += ["", f"Baseline: {b['what']}. Its bank: {b['bank_windows']} windows of `{b['data']}`, {kept}: "
                      f"{b['windows_read']} full windows of its series at stride 1 were accepted and "
                      f"{b['windows_rejected']} rejected (e.g. over a NaN)."]
    lines += [""] + [f"Warning: {w}" for w in m.get("warnings", [])]
    lines += [""] + [f"![{name}]({file})" for name, file in report["plots"].items()]
    return "\n".join(lines) + "\n"
