"""The evaluation report, the linear probe, drift, and thresholds reaching the embed outputs; labels that
are not scalars, null or NaN, or of one class only."""

import json
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.anomaly import drift, fit_threshold, read_reference
from seqae.config import EmbedConfig
from seqae.errors import SeqaeError
from seqae.evaluate import Scored, check_scalar_labels, evaluate, labelled_rows, markdown, metrics, probe, score_labels
from seqae.infer import embed
from seqae.thresholds import ThresholdConfig

slow = pytest.mark.slow  # uses the trained model of tests/conftest.py


@pytest.fixture()
def labelled(tmp_path, make_sine_table):
    """Normal sine rows (label 1) and noisy rows (label 2): two shards."""
    table = make_sine_table(n=120, length=12, seed=11)
    rng = np.random.default_rng(0)
    values = table.column("values").to_pylist()
    labels = [2 if i % 3 == 0 else 1 for i in range(120)]  # every third row is noise
    values = [list(rng.normal(0, 2, size=len(v))) if label == 2 else v for v, label in zip(values, labels)]
    table = pa.table({"id": table.column("id"), "label": pa.array(labels, pa.int32()),
                      "values": pa.array(values, pa.list_(pa.float32()))})
    data = tmp_path / "labelled"
    data.mkdir()
    pq.write_table(table.slice(0, 60), data / "a.parquet")
    pq.write_table(table.slice(60), data / "b.parquet")
    return data


@pytest.fixture()
def model(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


@slow
def test_export_wrote_the_held_out_reference(model):
    meta = json.loads((model / "seqae.json").read_text())
    reference = read_reference(model)
    assert meta["export"]["reference"]["rows"] == reference.num_rows > 0
    assert meta["export"]["reference"]["source"] == "validation split (key)"
    assert reference.schema.names == ["recon_error", "embedding", "pred_error"]


@slow
def test_a_fitted_threshold_adds_score_and_is_anomaly_to_the_outputs(model, labelled, tmp_path):
    before = embed(model, str(labelled), tmp_path / "out", EmbedConfig(device="cpu"))
    fitted = fit_threshold(model, ThresholdConfig(method="percentile", false_alarm_rate=0.05),
                           data=str(labelled), row_filter="label == 1", device="cpu")
    after = embed(model, str(labelled), tmp_path / "out", EmbedConfig(device="cpu"))
    assert before.totals["shards_done"] == 2 and after.totals["shards_done"] == 2  # the threshold is in the identity
    out = pq.read_table(tmp_path / "out" / "embeddings" / "b.parquet")
    assert out.schema.names[-4:] == ["score", "is_anomaly", "model_id", "model_version"]  # lineage last
    errors = out.column("recon_error").to_numpy()
    np.testing.assert_array_equal(out.column("is_anomaly").to_numpy(), errors > fitted.threshold_)
    scores = out.column("score").to_numpy()
    assert ((0 <= scores) & (scores <= 1)).all() and np.all(np.diff(scores[np.argsort(errors)]) >= -1e-6)
    # score_labels (the flows' evaluation artifact) reports the flag's precision, recall and F1
    from sklearn.metrics import f1_score, precision_score, recall_score

    both = pa.concat_tables([pq.read_table(tmp_path / "out" / "embeddings" / f"{n}.parquet") for n in ("a", "b")])
    truth, flagged = both.column("label").to_numpy() != 1, both.column("is_anomaly").to_numpy()
    result = score_labels(tmp_path / "out", "label", 1)
    for key, metric in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        assert result[f"{key}_at_threshold"] == round(float(metric(truth, flagged, zero_division=0.0)), 4), key


@slow
def test_the_report_holds_metrics_plots_and_the_probe(model, labelled, tmp_path):
    fit_threshold(model, ThresholdConfig(false_alarm_rate=0.05), data=str(labelled), row_filter="label == 1",
                  device="cpu")
    report = evaluate(model, str(labelled), tmp_path / "report", probe_train="id < 60", device="cpu")
    assert report["threshold"]["method"] == "percentile"  # what auto used on 80 normal rows, not "auto"
    a = report["anomaly"]
    assert a["rows"] == 120 and a["anomalous"] == 40
    assert a["roc_auc"] > 0.9  # noise is far from a sine to any autoencoder of sines
    c = a["at_threshold"]["confusion"]
    assert c["true_normal"] + c["false_alarm"] == 80 and c["missed"] + c["caught"] == 40
    assert set(a["per_class"]) == {"1", "2"}
    assert report["probe"]["train_rows"] == 60 and report["probe"]["test_rows"] == 60
    assert 0 <= report["probe"]["logistic_regression_on_embeddings"] <= 1
    files = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert files == ["embedding_2d.png", "error_histogram.png", "report.json", "report.md", "roc.png",
                     "worst_sequences.png"]
    assert report["reconstructions"] == "drawn" and len(report["worst"]) == 6
    worst = [w["recon_error"] for w in report["worst"]]
    assert worst == sorted(worst, reverse=True) and worst[-1] > a["per_class"]["1"]["mean_error"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| ROC-AUC |" in markdown and "![roc](roc.png)" in markdown and "| F1 |" in markdown
    assert json.loads((tmp_path / "report" / "report.json").read_text())["anomaly"] == a


@slow
def test_drift_on_shifted_and_unshifted_data(model, same_and_shifted, tmp_path):
    same_and_shifted(n=200, seed=12, scale=2, offset=1.5)
    same = drift(model, str(tmp_path / "same"), device="cpu")
    moved = drift(model, str(tmp_path / "shifted"), device="cpu")
    assert same["verdict"] == "no drift" and same["recon_error"]["p_value"] > 0.01
    assert moved["verdict"] == "drifted" and moved["recon_error"]["p_value"] < 1e-6
    assert moved["recon_error"]["median"] > 2 * moved["recon_error"]["reference_median"]


def scored_rows(labels, errors):
    n = len(labels)
    return Scored(np.asarray(labels), np.asarray(errors, dtype=np.float64), np.zeros((n, 2)), [], [], [], [], [],
                  np.arange(n), "id")


def test_the_probe_scores_each_classifier_on_its_own_features():
    """Two classes on concentric rings in the embedding: a 1-NN separates them, a linear model cannot;
    the raw values are noise that says nothing of the class."""
    rng = np.random.default_rng(0)
    n = 400
    labels = np.arange(n) % 2
    angle = rng.uniform(0, 2 * np.pi, n)
    radius = np.where(labels == 1, 3.0, 1.0) + rng.normal(0, 0.05, n)
    scored = scored_rows(labels, np.zeros(n))
    scored.embeddings = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    raw = rng.normal(size=(n, 5, 1)), np.full(n, 5)
    result = probe(scored, np.arange(n) < n // 2, raw)
    assert result["train_rows"] == result["test_rows"] == n // 2
    assert result["one_nn_euclidean_on_embeddings"] == 1.0
    assert result["logistic_regression_on_embeddings"] < 0.7
    assert result["one_nn_euclidean_on_raw_values"] < 0.65 and result["logistic_regression_on_raw_values"] < 0.65


@pytest.mark.parametrize("label_type", [pa.list_(pa.int32()), pa.struct([("a", pa.int32())]),
                                        pa.map_(pa.string(), pa.int32()), pa.dictionary(pa.int8(), pa.list_(pa.int8()))])
def test_non_scalar_labels_are_refused_in_one_line(label_type):
    with pytest.raises(SeqaeError, match=rf"^f\.parquet: column 'label': expected one scalar label per row \(a number, "
                                         rf"string or boolean\), found {re.escape(str(label_type))}; pass the column of "
                                         r"labels with --label-column$"):
        check_scalar_labels(label_type, "label", "f.parquet")
    for scalar in (pa.int8(), pa.string(), pa.bool_(), pa.float32(), pa.dictionary(pa.int8(), pa.string())):
        check_scalar_labels(scalar, "label", "f.parquet")


def test_null_and_nan_labels_are_not_labels():
    assert labelled_rows(pa.array([1.0, None, float("nan"), 2.0])).tolist() == [True, False, False, True]
    assert labelled_rows(pa.chunked_array([["a", None], ["b"]])).tolist() == [True, False, True]


@pytest.mark.parametrize("labels, anomalous", [([1] * 30, 0), ([2] * 30, 30)])
def test_one_class_gives_undefined_metrics_with_counts(labels, anomalous, tmp_path):
    scored = scored_rows(labels, np.linspace(0.1, 3, 30))
    result = metrics(scored, 1, threshold=2.0)
    assert result["roc_auc"] is None and result["pr_auc"] is None
    assert result["rows"] == 30 and result["anomalous"] == anomalous
    assert result["undefined"] == (f"ROC-AUC and PR-AUC are undefined: the labels hold one class only ({anomalous} of "
                                   "30 labelled rows differ from the normal value 1); evaluate on rows of both "
                                   "classes, or check --normal-value")
    assert result["at_threshold"]["confusion"]["false_alarm"] + result["at_threshold"]["confusion"]["caught"] == 10
    report = {"data": "d", "model": "m", "label_column": "label", "normal_value": 1, "created_at": "now",
              "threshold": {"method": "pot"}, "anomaly": result, "plots": {}}
    assert "| ROC-AUC | undefined (one class) |" in markdown(report) and result["undefined"] in markdown(report)


@pytest.fixture()
def messy_labels(tmp_path, make_sine_table):
    """Sine rows labelled 1 (normal) and 2 (noise), some labels null or NaN (float labels)."""
    table = make_sine_table(n=60, length=12, seed=3)
    rng = np.random.default_rng(1)
    labels = [2.0 if i % 3 == 0 else 1.0 for i in range(60)]
    values = [list(rng.normal(0, 2, size=len(v))) if lab == 2 else v
              for v, lab in zip(table.column("values").to_pylist(), labels)]
    labels[1], labels[2], labels[3] = None, float("nan"), None
    data = tmp_path / "messy"
    data.mkdir()
    pq.write_table(pa.table({"id": table.column("id"), "label": pa.array(labels, pa.float64()),
                             "values": pa.array(values, pa.list_(pa.float32()))}), data / "p.parquet")
    return data


@slow
def test_null_and_nan_labels_are_left_out_and_counted(model, messy_labels, tmp_path):
    report = evaluate(model, str(messy_labels), tmp_path / "report", device="cpu", probe_train="id < 30")
    a = report["anomaly"]
    assert a["unlabelled"] == 3 and a["rows"] == 57 and a["anomalous"] == 19  # rows 3 (null) is not an anomaly
    assert a["roc_auc"] is not None and set(a["per_class"]) == {"1.0", "2.0"}
    assert report["probe"]["train_rows"] + report["probe"]["test_rows"] == 57
    assert "(3 rows without a label left out)" in (tmp_path / "report" / "report.md").read_text()
    embed(model, str(messy_labels), tmp_path / "out", EmbedConfig(device="cpu"))
    result = score_labels(tmp_path / "out", "label", 1)
    assert result["unlabelled"] == 3 and result["rows"] == 57 and result["anomalous"] == 19


@slow
def test_a_list_label_column_is_refused_in_one_line(model, tmp_path, make_sine_table):
    table = make_sine_table(n=30, length=12, seed=4)
    table = table.set_column(1, "label", pa.array([[1]] * 30, pa.list_(pa.int32())))
    (tmp_path / "lists").mkdir()
    pq.write_table(table, tmp_path / "lists" / "p.parquet")
    with pytest.raises(SeqaeError, match=r"p\.parquet: column 'label': expected one scalar label per row \(a number, "
                                         r"string or boolean\), found list<\w+: int32>; pass the column"):
        evaluate(model, str(tmp_path / "lists"), tmp_path / "report", device="cpu")
    embed(model, str(tmp_path / "lists"), tmp_path / "out", EmbedConfig(device="cpu"))
    with pytest.raises(SeqaeError, match=r"p\.parquet: column 'label': expected one scalar label per row"):
        score_labels(tmp_path / "out", "label", 1)


@slow
def test_one_class_data_evaluates_to_undefined_metrics_instead_of_failing(model, tmp_path, make_sine_table):
    """What `python -m flows pipeline` runs on its committed outputs: one class must not fail it."""
    (tmp_path / "normal").mkdir()
    pq.write_table(make_sine_table(n=40, length=12, seed=6), tmp_path / "normal" / "p.parquet")
    embed(model, str(tmp_path / "normal"), tmp_path / "out", EmbedConfig(device="cpu"))
    result = score_labels(tmp_path / "out", "label", 1)
    assert result["roc_auc"] is None and result["rows"] == 40 and result["anomalous"] == 0
    assert result["undefined"].startswith("ROC-AUC and PR-AUC are undefined: the labels hold one class only (0 of 40")
    report = evaluate(model, str(tmp_path / "normal"), tmp_path / "report", device="cpu")
    assert report["anomaly"]["roc_auc"] is None and "roc" not in report["plots"]


@slow
def test_the_nearest_window_baseline_is_refused_for_the_sequence_layout(model, labelled, tmp_path):
    with pytest.raises(SeqaeError, match="--baseline-data applies to long-layout models"):
        evaluate(model, str(labelled), tmp_path / "report", device="cpu", baseline_data=str(labelled))
    assert not (tmp_path / "report").exists()  # the failed run removed the folder it made
    (tmp_path / "kept").mkdir()
    with pytest.raises(SeqaeError, match="--baseline-data applies to long-layout models"):
        evaluate(model, str(labelled), tmp_path / "kept", device="cpu", baseline_data=str(labelled))
    assert (tmp_path / "kept").is_dir()  # a folder the user made stays
