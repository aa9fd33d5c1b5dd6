"""The evaluation report, the linear probe, drift, and thresholds reaching the embed outputs."""

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.anomaly import drift, fit_threshold, read_reference
from seqae.config import EmbedConfig
from seqae.evaluate import evaluate
from seqae.infer import embed
from seqae.thresholds import ThresholdConfig

pytestmark = pytest.mark.slow  # uses the trained model of tests/conftest.py


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


def test_export_wrote_the_held_out_reference(model):
    meta = json.loads((model / "seqae.json").read_text())
    reference = read_reference(model)
    assert meta["export"]["reference"]["rows"] == reference.num_rows > 0
    assert meta["export"]["reference"]["source"] == "validation split (key)"
    assert reference.schema.names == ["recon_error", "embedding", "pred_error"]


def test_a_fitted_threshold_adds_score_and_is_anomaly_to_the_outputs(model, labelled, tmp_path):
    before = embed(model, str(labelled), tmp_path / "out", EmbedConfig(device="cpu"))
    fitted = fit_threshold(model, ThresholdConfig(method="percentile", false_alarm_rate=0.05),
                           data=str(labelled), row_filter="label == 1", device="cpu")
    after = embed(model, str(labelled), tmp_path / "out", EmbedConfig(device="cpu"))
    assert before.totals["shards_done"] == 2 and after.totals["shards_done"] == 2  # the threshold is in the identity
    out = pq.read_table(tmp_path / "out" / "b.parquet")
    assert out.schema.names[-2:] == ["score", "is_anomaly"]
    errors = out.column("recon_error").to_numpy()
    np.testing.assert_array_equal(out.column("is_anomaly").to_numpy(), errors > fitted.threshold_)
    scores = out.column("score").to_numpy()
    assert ((0 <= scores) & (scores <= 1)).all() and np.all(np.diff(scores[np.argsort(errors)]) >= -1e-6)


def test_the_report_holds_metrics_plots_and_the_probe(model, labelled, tmp_path):
    fit_threshold(model, ThresholdConfig(method="percentile", false_alarm_rate=0.05), data=str(labelled),
                  row_filter="label == 1", device="cpu")
    report = evaluate(model, str(labelled), tmp_path / "report", probe_train="id < 60", device="cpu")
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


def test_drift_on_shifted_and_unshifted_data(model, same_and_shifted, tmp_path):
    same_and_shifted(n=200, seed=12, scale=2, offset=1.5)
    same = drift(model, str(tmp_path / "same"), device="cpu")
    moved = drift(model, str(tmp_path / "shifted"), device="cpu")
    assert same["verdict"] == "no drift" and same["recon_error"]["p_value"] > 0.01
    assert moved["verdict"] == "drifted" and moved["recon_error"]["p_value"] < 1e-6
    assert moved["recon_error"]["median"] > 2 * moved["recon_error"]["reference_median"]
