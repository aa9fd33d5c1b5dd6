"""Reconstruction error as an anomaly score, and the embedding as features, judged against labels.

``evaluate`` scores labelled data with a model and reports ROC-AUC, PR-AUC, precision, recall and F1
at the stored threshold and a confusion table (scikit-learn), with plots (ROC curve, error histogram
per class with the threshold, the worst-reconstructed sequences with their per-step error, a 2-D
projection of the embeddings) in a JSON and a Markdown report. ``probe`` is the paper's use of the
encoder as a feature extractor: a logistic regression on embeddings against the same on raw values
and a 1-nearest-neighbour baseline. No TensorFlow, no Prefect.
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
from seqae._optional import import_optional
from seqae.config import Device, EmbedConfig
from seqae.data import RowFilter, ShardReader, pad_concat, resolve_shards
from seqae.errors import SeqaeError
from seqae.infer.commit import committed_outputs
from seqae.infer.model import InferenceModel
from seqae.modeldir import ModelInfo
from seqae.modelstore import local_model_dir, location_of, staged_output
from seqae.points import json_value, normal_scalar
from seqae.storage import Location, utc_now, write_json

WORST = 6


@dataclass
class Scored:
    """Labelled rows scored by a model: what every metric and plot here reads."""

    labels: np.ndarray
    errors: np.ndarray
    embeddings: np.ndarray
    values: list[np.ndarray]  # the worst rows only (input, raw units), with their step errors
    step_errors: list[np.ndarray]
    worst_errors: list[float]
    worst_keys: list[Any]
    worst_labels: list[Any]
    keys: np.ndarray
    key_column: str
    reconstructions: list[np.ndarray] | None = None  # of the worst rows, raw units (None: not available)
    reconstruction_note: str = ""
    unlabelled: int = 0  # scored rows whose label is null or NaN: left out of every metric
    labelled: np.ndarray | None = None  # over every scored row, in reading order: which are kept above


def check_scalar_labels(label_type: pa.DataType, label_column: str, where: str) -> None:
    """Refuse a label column of lists, structs or maps in one line (a label is one value per row)."""
    inner = label_type.value_type if pa.types.is_dictionary(label_type) else label_type
    if pa.types.is_nested(inner):
        raise SeqaeError(f"{where}: column '{label_column}': expected one scalar label per row (a number, string or "
                         f"boolean), found {label_type}; pass the column of labels with --label-column")


def labelled_rows(labels: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``(n,)`` bool: the rows whose label is neither null nor NaN."""
    valid = pc.is_valid(labels)
    if pa.types.is_floating(labels.type):
        valid = pc.and_(valid, pc.fill_null(pc.invert(pc.is_nan(labels)), False))
    return np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)


def score_labelled(model_dir: str | os.PathLike, data: str, label_column: str, *, row_filter: str | None = None,
                   device: Device = "auto", read_batch_size: int = 4096) -> Scored:
    """Score every accepted row at ``data`` and keep its label, error and embedding (and the worst
    rows' values and step errors for the plots)."""
    from seqae.anomaly import score_rows

    model = InferenceModel.open(model_dir, EmbedConfig(device=device, step_errors=True))
    flt = RowFilter.parse(row_filter) if row_filter else None
    labels, errors, embeddings, keys = [], [], [], []
    worst: list[tuple[float, Any, Any, np.ndarray, np.ndarray]] = []
    for shard in resolve_shards(data):
        reader = ShardReader(shard, model.data, batch_size=read_batch_size, row_filter=flt,
                             num_features=model.num_features)
        if label_column not in reader.passthrough_columns:
            raise SeqaeError(f"{shard.uri}: column '{label_column}' is missing; expected the labels, found "
                             f"{', '.join(reader.schema.names)}")
        check_scalar_labels(reader.schema.field(label_column).type, label_column, shard.uri)
        for batch, _ in reader:
            if not len(batch):
                continue
            out = score_rows(model.scorer, model.batch_size, iter([(batch.values, batch.lengths)]))
            label_array = batch.passthrough.column(label_column)
            batch_labels = label_array.to_numpy(zero_copy_only=False)
            batch_keys = batch.keys.column(0).to_numpy(zero_copy_only=False)
            labels.extend(label_array.chunks)
            keys.append(batch_keys)
            errors.append(out[names.RECON_ERROR])
            embeddings.append(out[names.EMBEDDING])
            for i in np.argsort(out[names.RECON_ERROR])[-WORST:]:
                n = int(batch.lengths[i])
                worst.append((float(out[names.RECON_ERROR][i]), batch_keys[i], batch_labels[i],
                              batch.values[i, :n].copy(), out[names.STEP_ERROR][i, :n].copy()))
            worst = sorted(worst, key=lambda w: -w[0])[:WORST]
    if not errors:
        raise SeqaeError(f"{data}: no accepted row to evaluate")
    all_labels = pa.chunked_array(labels)
    keep = labelled_rows(all_labels)
    if not keep.any():
        raise SeqaeError(f"{data}: column '{label_column}': expected labels, found {len(keep)} scored rows whose "
                         "labels are all null or NaN")
    recons, note = worst_reconstructions(model_dir, [w[3] for w in worst])
    return Scored(all_labels.filter(pa.array(keep)).to_numpy(zero_copy_only=False), np.concatenate(errors)[keep],
                  np.concatenate(embeddings)[keep], [w[3] for w in worst], [w[4] for w in worst],
                  [w[0] for w in worst], [w[1] for w in worst], [json_value(w[2]) for w in worst],
                  np.concatenate(keys)[keep], model.data.key_column, recons, note, int((~keep).sum()), keep)


def worst_reconstructions(model_dir, rows: list[np.ndarray]) -> tuple[list[np.ndarray] | None, str]:
    """What the decoder makes of each of ``rows`` (raw units), from the Keras model in the model
    directory: the ONNX scorer outputs errors, not reconstructions. Without TensorFlow (an
    inference-only install) or for a predict-only model: ``None`` and why."""
    try:
        from seqae.model import load_model
    except ImportError:
        return None, "not drawn: TensorFlow is not installed (pip install 'seqae[train]')"
    if not rows:
        return None, "no rows"
    longest = max(len(r) for r in rows)
    values = np.zeros((len(rows), longest, rows[0].shape[-1]), np.float32)
    for i, r in enumerate(rows):
        values[i, : len(r)] = r
    lengths = np.array([len(r) for r in rows], np.int32)
    out = load_model(local_model_dir(model_dir)).reconstruct(values, lengths)  # Keras reads local files only
    if out is None:
        return None, "not drawn: a predict-only model does not reconstruct"
    return [out[i, : n] for i, n in enumerate(lengths)], ""


def one_class(anomalous: int, rows: int, normal_value: Any) -> str | None:
    """Why ROC-AUC and PR-AUC are undefined for these counts, or None when both classes are present."""
    if 0 < anomalous < rows:
        return None
    return (f"ROC-AUC and PR-AUC are undefined: the labels hold one class only ({anomalous} of {rows} labelled rows "
            f"differ from the normal value {normal_value!r}); evaluate on rows of both classes, or check "
            "--normal-value")


def metrics(scored: Scored, normal_value: Any, threshold: float | None) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, per-class errors and, with a threshold, precision, recall, F1 and the confusion
    table; with one class only, ROC-AUC and PR-AUC are None and ``undefined`` says why."""
    from sklearn.metrics import (
        average_precision_score,
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    anomalous = scored.labels != normal_value
    result: dict[str, Any] = {"rows": int(len(anomalous)), "anomalous": int(anomalous.sum()),
                              "unlabelled": scored.unlabelled}
    undefined = one_class(int(anomalous.sum()), len(anomalous), normal_value)
    if undefined:
        result.update(roc_auc=None, pr_auc=None, undefined=undefined)
    else:
        result.update(roc_auc=round(float(roc_auc_score(anomalous, scored.errors)), 4),
                      pr_auc=round(float(average_precision_score(anomalous, scored.errors)), 4))
    per_class = {}
    for label in np.unique(scored.labels):
        e = scored.errors[scored.labels == label]
        per_class[str(label)] = {"rows": int(len(e)), "mean_error": round(float(e.mean()), 5),
                                 "median_error": round(float(np.median(e)), 5)}
    result["per_class"] = per_class
    if threshold is not None:
        flagged = scored.errors > threshold
        precision, recall, f1, _ = precision_recall_fscore_support(anomalous, flagged, average="binary",
                                                                   zero_division=0)
        tn, fp, fn, tp = confusion_matrix(anomalous, flagged, labels=[False, True]).ravel()
        result["at_threshold"] = {"threshold": threshold, "precision": round(float(precision), 4),
                                  "recall": round(float(recall), 4), "f1": round(float(f1), 4),
                                  "false_alarm_rate": round(float(fp / max(fp + tn, 1)), 5),
                                  "confusion": {"true_normal": int(tn), "false_alarm": int(fp), "missed": int(fn),
                                                "caught": int(tp)}}
    return result


def probe(scored: Scored, train_mask: np.ndarray, raw: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Accuracy on the test rows of a logistic regression on the embeddings (fitted on the train
    rows) and of a 1-nearest-neighbour classifier on them, beside the same two on the raw padded
    values. The two 1-NN figures say whether the embedding keeps the raw series' neighbourhoods; the
    logistic ones, what a linear model reads from it (with a few dozen train rows, less than 1-NN)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test_mask = ~train_mask
    if train_mask.sum() < 2 or test_mask.sum() < 1:
        raise SeqaeError(f"probe: expected rows on both sides of the split, got {int(train_mask.sum())} train and "
                         f"{int(test_mask.sum())} test")
    y = scored.labels

    def fit(features: np.ndarray, model) -> float:
        model.fit(features[train_mask], y[train_mask])
        return round(float((model.predict(features[test_mask]) == y[test_mask]).mean()), 4)

    logistic = lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))  # noqa: E731
    result = {"train_rows": int(train_mask.sum()), "test_rows": int(test_mask.sum()),
              "logistic_regression_on_embeddings": fit(scored.embeddings, logistic()),
              "one_nn_euclidean_on_embeddings": fit(scored.embeddings, KNeighborsClassifier(n_neighbors=1))}
    if raw is not None:
        values, _ = raw
        flat = values.reshape(len(values), -1)
        result["logistic_regression_on_raw_values"] = fit(flat, logistic())
        result["one_nn_euclidean_on_raw_values"] = fit(flat, KNeighborsClassifier(n_neighbors=1))
    return result


def raw_values(model_dir: str | os.PathLike, data: str, row_filter: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every accepted row's values padded to the longest, in the order ``score_labelled`` reads them."""
    from seqae.anomaly import iter_dataset

    model = InferenceModel.open(model_dir, EmbedConfig(device="cpu"))
    return pad_concat(list(iter_dataset(model, data, row_filter)), model.info.num_features)


def plots(scored: Scored, normal_value: Any, threshold: float | None, out: Path) -> dict[str, str]:
    """ROC curve, error histogram per class, the worst sequences with their step errors, and a 2-D
    PCA projection of the embeddings; PNG files in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.metrics import roc_curve

    files = {}
    anomalous = scored.labels != normal_value
    if 0 < anomalous.sum() < len(anomalous):  # no ROC curve of one class
        fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
        fpr, tpr, _ = roc_curve(anomalous, scored.errors)
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], ls=":", c="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC: recon_error as the score")
        files["roc"] = _save(fig, out / "roc.png")

    fig, ax = plt.subplots(figsize=(6.5, 3.5), dpi=100)
    low = max(float(scored.errors.min()), 1e-9)
    bins = np.logspace(np.log10(low), np.log10(max(float(scored.errors.max()), low * 10)), 60).tolist()
    for label in np.unique(scored.labels):
        ax.hist(scored.errors[scored.labels == label], bins=bins, alpha=0.5, label=f"{label}")
    if threshold is not None:
        ax.axvline(threshold, c="k", ls="--", label="threshold")
    ax.set(xscale="log", xlabel="recon_error (standardised units)", ylabel="rows", title="error per class")
    ax.legend(fontsize=7)
    files["error_histogram"] = _save(fig, out / "error_histogram.png")

    fig, axes = plt.subplots(len(scored.values), 1, figsize=(7, 1.6 * len(scored.values)), dpi=100, squeeze=False)
    recons: list[np.ndarray | None] = [None] * len(scored.values)
    if scored.reconstructions:
        recons = list(scored.reconstructions)
    for i, (ax, values, steps, error, key, label, recon) in enumerate(zip(
            axes[:, 0], scored.values, scored.step_errors, scored.worst_errors, scored.worst_keys,
            scored.worst_labels, recons)):
        ax.plot(values[:, 0] if values.ndim == 2 else values, lw=1, label="input")
        if recon is not None:
            ax.plot(recon[:, 0], lw=1, ls="--", c="tab:green", label="reconstruction")
        twin = ax.twinx()
        twin.fill_between(np.arange(len(steps)), steps, color="tab:red", alpha=0.3, label="step error")
        twin.set_ylabel("step error", fontsize=7)
        ax.set_title(f"key {key}, label {label}: recon_error {error:.3g}", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7, loc="upper left")
    what = "input vs reconstruction" if scored.reconstructions else f"input (reconstruction {scored.reconstruction_note})"
    fig.suptitle(f"the worst-reconstructed sequences, first feature: {what}; shaded: per-step error", fontsize=9)
    files["worst_sequences"] = _save(fig, out / "worst_sequences.png")

    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    sample = np.random.default_rng(0).permutation(len(scored.labels))[:5000]
    xy = PCA(n_components=2, random_state=0).fit_transform(scored.embeddings[sample])
    for label in np.unique(scored.labels[sample]):
        m = scored.labels[sample] == label
        ax.scatter(xy[m, 0], xy[m, 1], s=3, alpha=0.6, label=f"{label}")
    ax.set(title="embeddings, 2-D PCA", xlabel="PC 1", ylabel="PC 2")
    ax.legend(fontsize=7, markerscale=3)
    files["embedding_2d"] = _save(fig, out / "embedding_2d.png")
    return files


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def evaluate(model_dir: str | os.PathLike, data: str, out: str | os.PathLike, *, label_column: str = "label",
             normal_value: Any = 1, row_filter: str | None = None, probe_train: str | None = None,
             device: Device = "auto", baseline_data: str | None = None) -> dict[str, Any]:
    """Score labelled ``data`` and write ``report.json``, ``report.md`` and the plots into ``out``.

    ``model_dir`` and ``out`` may be URIs (``s3://...``; credentials in them are refused): the
    model is read where it is (its Keras file through the local cache, ``seqae.modelstore``), the
    report is written in a local temporary folder and uploaded with ``report.json`` last.

    Args:
        probe_train: a row filter naming the probe's training rows (e.g. ``"id < 500"``, ECG5000's
            own train part); the other rows are its test rows. ``None``: no probe.
        baseline_data: long layout: normal data (e.g. the training data) for the nearest-training-window
            baseline (``seqae.baseline``), reported beside the model's step score. ``None``: none.
    """
    location_of(model_dir)  # credentials in a URI are refused before any work
    import_optional("matplotlib", "train", needed_for="seqae.evaluate (its plots)")
    with staged_output(out) as local_out:
        return _evaluate(model_dir, data, local_out, label_column=label_column, normal_value=normal_value,
                         row_filter=row_filter, probe_train=probe_train, device=device, baseline_data=baseline_data)


def _evaluate(model_dir, data: str, out: Path, *, label_column: str, normal_value: Any,
              row_filter: str | None, probe_train: str | None, device: Device,
              baseline_data: str | None = None) -> dict[str, Any]:
    from seqae.thresholds import Threshold

    threshold = Threshold.load(model_dir)
    report: dict[str, Any] = {"model": str(model_dir), "data": data, "label_column": label_column,
                              "normal_value": normal_value, "created_at": utc_now(),
                              "threshold": None if threshold is None else {
                                  "method": threshold.method_, "value": threshold.threshold_,
                                  "false_alarm_rate": threshold.config.false_alarm_rate}}
    if ModelInfo.read(model_dir).data.layout == "long":
        return _evaluate_points(report, model_dir, data, out, threshold, row_filter, probe_train, device, baseline_data)
    if baseline_data is not None:
        raise SeqaeError(f"evaluate: --baseline-data applies to long-layout models (a nearest training window per "
                         f"window of a series); {model_dir} reads the sequence layout: for whole sequences, --probe "
                         "compares with 1-NN")
    scored = score_labelled(model_dir, data, label_column, row_filter=row_filter, device=device)
    labels = pa.array(scored.labels)
    normal_value = normal_scalar(normal_value, labels.type, label_column, data, labels).as_py()
    report["anomaly"] = metrics(scored, normal_value, threshold.threshold_ if threshold else None)
    if probe_train:
        flt = RowFilter.parse(probe_train)
        if set(flt.columns) != {scored.key_column}:
            raise SeqaeError(f"probe: the split filter {probe_train!r} may use the key column "
                             f"'{scored.key_column}' only, e.g. \"{scored.key_column} < 500\"")
        train_mask = flt.mask(pa.table({scored.key_column: scored.keys}))
        values, lengths = raw_values(model_dir, data, row_filter)
        keep = scored.labelled if scored.labelled is not None else slice(None)
        report["probe"] = probe(scored, train_mask, (values[keep], lengths[keep]))
    report["worst"] = [{"key": json_value(k), "label": json_value(lab), "recon_error": round(e, 6)}
                       for k, lab, e in zip(scored.worst_keys, scored.worst_labels, scored.worst_errors)]
    report["reconstructions"] = "drawn" if scored.reconstructions else scored.reconstruction_note
    report["plots"] = plots(scored, normal_value, threshold.threshold_ if threshold else None, out)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report))
    return report


def _evaluate_points(report: dict[str, Any], model_dir, data: str, out: Path, threshold, row_filter, probe_train,
                     device: Device, baseline_data: str | None) -> dict[str, Any]:
    """The long layout: labels per time step, scores per time step (``seqae.points``)."""
    from seqae import points

    if row_filter or probe_train:
        raise SeqaeError("evaluate: --filter and --probe apply to the sequence layout; a long-layout model is "
                         "evaluated per time step on every step of the data")
    scored = points.score_steps(model_dir, data, report["label_column"], report["normal_value"], device=device,
                                baseline_data=baseline_data)
    value = threshold.threshold_ if threshold is not None else None
    report["points"] = points.point_metrics(scored, value)
    report["plots"] = {"series_scores": points.plot_series(scored, value, out)}
    write_json(out / "report.json", report)
    (out / "report.md").write_text(points.markdown(report))
    return report


def _shown(value: Any) -> str:
    return "undefined (one class)" if value is None else str(value)


def markdown(report: dict[str, Any]) -> str:
    a = report["anomaly"]
    lines = [f"# seqae evaluation: {report['data']}", "",
             f"Model `{report['model']}`, labels in `{report['label_column']}` (normal: {report['normal_value']!r}), "
             f"{a['rows']} rows of which {a['anomalous']} anomalous"
             f"{f' ({u} rows without a label left out)' if (u := a.get('unlabelled')) else ''}; "
             f"{report['created_at']}.", "",
             "| metric | value |", "|---|---:|", f"| ROC-AUC | {_shown(a['roc_auc'])} |",
             f"| PR-AUC | {_shown(a['pr_auc'])} |"]
    if "at_threshold" in a:
        t = a["at_threshold"]
        lines += [f"| threshold ({report['threshold']['method']}) | {t['threshold']:.4g} |",
                  f"| precision | {t['precision']} |", f"| recall | {t['recall']} |", f"| F1 | {t['f1']} |",
                  f"| false alarm rate | {t['false_alarm_rate']} |", "",
                  "| | flagged normal | flagged anomalous |", "|---|---:|---:|",
                  f"| normal | {t['confusion']['true_normal']} | {t['confusion']['false_alarm']} |",
                  f"| anomalous | {t['confusion']['missed']} | {t['confusion']['caught']} |"]
    else:
        lines += ["", "No threshold stored with the model (`seqae threshold`): no F1."]
    if a.get("undefined"):
        lines += ["", a["undefined"]]
    lines += ["", "| class | rows | mean error | median error |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['rows']} | {v['mean_error']} | {v['median_error']} |" for k, v in a["per_class"].items()]
    if "probe" in report:
        p = report["probe"]
        lines += ["", f"Linear probe ({p['train_rows']} train rows, {p['test_rows']} test rows), accuracy:", "",
                  "| features | accuracy |", "|---|---:|"]
        lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in p.items() if k not in ("train_rows", "test_rows")]
    lines += [""] + [f"![{name}]({file})" for name, file in report["plots"].items()]
    return "\n".join(lines) + "\n"


# --- over the committed outputs of an embed run (what the pipeline flow reports) --------------------

def has_column(out: str | os.PathLike | Location, column: str) -> bool:
    """Whether the committed outputs of ``out`` carry ``column`` (e.g. a passthrough label)."""
    outputs = committed_outputs(out)
    if not outputs:
        return False
    first = outputs[0]
    with first.filesystem.open_input_file(first.path) as handle:
        return column in pq.read_schema(handle).names


def score_labels(out: str | os.PathLike | Location, label_column: str, normal_value: Any,
                 score_column: str = names.RECON_ERROR) -> dict[str, Any]:
    """ROC-AUC and PR-AUC of ``score_column`` over an embed run's committed outputs, against
    ``label_column != normal_value`` (and F1 where the outputs carry ``is_anomaly``).

    Rows whose label is null or NaN are left out and counted (``unlabelled``). With one class only the
    metrics are undefined: ``roc_auc`` and ``pr_auc`` are None and ``undefined`` says why, with the
    counts (a pipeline that committed its outputs does not fail here).

    Raises:
        SeqaeError: no committed output, a column missing, or labels that are not scalars.
    """
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

    outputs = committed_outputs(out)
    if not outputs:
        raise SeqaeError(f"{Location.of(out)}: no committed output to evaluate")
    tables = []
    for location in outputs:
        with location.filesystem.open_input_file(location.path) as handle:
            schema = pq.read_schema(handle)
            missing = [c for c in (label_column, score_column) if c not in schema.names]
            if missing:
                raise SeqaeError(f"{location}: column(s) {', '.join(missing)} missing; expected the label passed "
                                 f"through from the input, found {', '.join(schema.names)}")
            check_scalar_labels(schema.field(label_column).type, label_column, str(location))
            columns = [label_column, score_column] + ([names.IS_ANOMALY] if names.IS_ANOMALY in schema.names else [])
            tables.append(pq.read_table(handle, columns=columns))
    table = pa.concat_tables(tables)
    keep = labelled_rows(table.column(label_column))
    table = table.filter(pa.array(keep))
    labels = table.column(label_column)
    normal = normal_scalar(normal_value, labels.type, label_column, Location.of(out).uri, labels)
    anomalous = np.asarray(pc.not_equal(labels, normal).to_numpy(zero_copy_only=False), dtype=bool)
    scores = table.column(score_column).to_numpy().astype(np.float64)
    result = {"rows": len(scores), "anomalous": int(anomalous.sum()), "unlabelled": int((~keep).sum()),
              "score": score_column, "label_column": label_column, "normal_value": normal_value}
    undefined = one_class(int(anomalous.sum()), len(anomalous), normal_value)
    if undefined:
        return {**result, "roc_auc": None, "pr_auc": None, "undefined": undefined}
    result.update(roc_auc=round(float(roc_auc_score(anomalous, scores)), 4),
                  pr_auc=round(float(average_precision_score(anomalous, scores)), 4))
    if names.IS_ANOMALY in table.column_names:
        flagged = np.asarray(table.column(names.IS_ANOMALY).to_numpy(zero_copy_only=False), dtype=bool)
        result.update(precision_at_threshold=round(float(precision_score(anomalous, flagged, zero_division=0.0)), 4),
                      recall_at_threshold=round(float(recall_score(anomalous, flagged, zero_division=0.0)), 4),
                      f1_at_threshold=round(float(f1_score(anomalous, flagged, zero_division=0.0)), 4))
    return result
