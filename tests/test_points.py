"""Point-anomaly metrics on inputs whose answers are known by hand."""

import numpy as np
import pytest

from seqae.data import ShardReader, key_runs, resolve_shards
from seqae.errors import SeqaeError
from seqae.points import ScoredSteps, normal_scalar, point_adjust, point_metrics, segments, ucr_hits


def scored(keys, scores, labels, steps_in=None, step_threshold=None):
    """Steps scored ``scores`` (window_error_min); their own step errors rank them the other way round, and
    so does their covering windows' mean error."""
    keys = np.asarray(keys)
    scores = np.asarray(scores, dtype=np.float32)
    return ScoredSteps(keys, np.arange(len(keys)), np.zeros(len(keys)), 2 - scores, scores, 1 - scores, scores * 2,
                       np.asarray(labels, dtype=bool), steps_in or len(keys), "k", "t", "x",
                       step_threshold=step_threshold)


def test_segments_never_cross_series():
    keys = np.array(["a"] * 5 + ["b"] * 4)
    labels = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1], bool)
    assert key_runs(keys) == [(0, 5), (5, 9)]
    assert segments(labels, key_runs(keys)) == [(1, 3), (4, 5), (5, 7), (8, 9)]


def test_point_adjust_flags_a_whole_segment_from_one_hit():
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0], bool)
    flagged = np.array([0, 0, 1, 0, 0, 1, 0, 0, 0], bool)
    adjusted = point_adjust(flagged, labels, [(0, 9)])
    assert adjusted.astype(int).tolist() == [0, 1, 1, 1, 0, 1, 0, 0, 0]


def test_ucr_hit_is_the_top_score_within_the_margin():
    labels = np.zeros(1000, bool)
    labels[500:510] = True
    near, far = np.zeros(1000), np.zeros(1000)
    near[605] = far[700] = 1.0
    assert ucr_hits(near, labels, [(0, 1000)], margin=100) == [
        {"start": 0, "top": 605, "anomaly": [500, 509], "segments": 1, "distance": 96, "hit": True}]
    assert ucr_hits(far, labels, [(0, 1000)], margin=100)[0]["hit"] is False
    labels[800:805] = True  # a second segment: 700 lies between the two, 100 steps from the nearest labelled step
    assert ucr_hits(far, labels, [(0, 1000)], margin=100) == [
        {"start": 0, "top": 700, "anomaly": [500, 804], "segments": 2, "distance": 100, "hit": True}]


def test_point_metrics_on_a_known_case():
    # Series a: anomaly at steps 3-4, scored highest; series b: no anomaly.
    keys = ["a"] * 8 + ["b"] * 4
    scores = [0.1, 0.1, 0.2, 0.9, 0.3, 0.1, 0.1, 0.1, 0.1, 0.4, 0.1, 0.1]
    labels = [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    m = point_metrics(scored(keys, scores, labels, steps_in=14), threshold=0.5)
    assert m["steps"] == 12 and m["steps_unscored"] == 2 and m["series"] == 2 and m["segments"] == 1
    # ROC-AUC: 0.9 beats all 10 normals, 0.3 beats the 9 below it (not b's 0.4) -> 19/20.
    assert m["roc_auc"] == pytest.approx(0.95) and m["score"] == "window_error_min"
    assert m["roc_auc_of_step_error_mean"] == pytest.approx(0.05)
    assert m["roc_auc_of_window_error_mean"] == pytest.approx(0.05)
    assert m["at_threshold"] == {"threshold": 0.5, "fitted_on": "held-out window errors", "precision": 1.0,
                                 "recall": 0.5, "f1": 0.6667, "flagged_steps": 1, "false_alarms_normal_steps": 0.0}
    assert "not on step scores" in m["warnings"][0]
    assert m["point_adjusted"]["recall"] == 1.0 and m["point_adjusted"]["f1"] == 1.0
    assert m["ucr"]["hit_rate"] == 1.0 and m["ucr"]["series_with_anomaly"] == 1
    assert m["ucr"]["per_series"][0]["series"] == "a"


def test_one_class_gives_undefined_metrics_with_counts_naming_the_labels():
    steps = scored(["a"] * 3, [0.1, 0.2, 0.3], [0, 0, 0])
    steps.label_values = (0, 1)
    m = point_metrics(steps, threshold=0.25)
    assert m["roc_auc"] is None and m["pr_auc"] is None and m["roc_auc_of_max"] is None
    assert m["undefined"] == ("ROC-AUC and PR-AUC are undefined: the labels have one class only (0 of 3 scored steps "
                              "are anomalous; labels found: 0, 1): is --normal-value the label of normal steps?")
    assert m["steps"] == 3 and m["anomalous_steps"] == 0 and m["at_threshold"]["flagged_steps"] == 1
    assert m["ucr"]["hit_rate"] is None
    steps.baseline, steps.baseline_info = np.array([0.3, 0.2, 0.1]), {"bank_windows": 4}
    b = point_metrics(steps, threshold=0.25)["baseline"]  # the same keys, undefined alike
    assert b == {"bank_windows": 4, "spread": "window_error_min", "roc_auc": None, "pr_auc": None,
                 "model_roc_auc_unscaled": None, "hit_rate": None}


def test_the_baseline_is_compared_with_the_models_score_and_with_its_unscaled_statistic():
    keys, labels = ["a"] * 6, [0, 0, 1, 1, 0, 0]
    steps = scored(keys, [0.1, 0.2, 0.3, 0.4, 0.5, 0.1], labels)
    steps.baseline, steps.baseline_info = np.array([0.0, 0.1, 0.9, 0.8, 0.2, 0.0]), {}
    steps.adjusted = np.array([0.1, 0.2, 0.3, 0.4, 0.25, 0.1])  # the last normal step scaled down, as at a series end
    m = point_metrics(steps, threshold=None)
    b = m["baseline"]
    assert (m["roc_auc"], b["model_roc_auc_unscaled"], b["roc_auc"], b["hit_rate"]) == (1.0, 0.75, 1.0, 1.0)
    assert not any("baseline ranks" in w for w in m["warnings"])  # a tie is not a win
    steps.adjusted = None  # scored by the unscaled statistic, the model loses to the baseline
    assert any("baseline ranks the anomalous steps better" in w for w in point_metrics(steps, None)["warnings"])
    steps.statistic = "window_error_mean"  # an older threshold file's statistic: the mean, 2 - scores here
    assert point_metrics(steps, None)["baseline"]["model_roc_auc_unscaled"] == 0.25


def test_the_models_step_threshold_flags_and_the_normal_steps_flagged_are_counted():
    keys = ["a"] * 8 + ["b"] * 4
    scores = [0.1, 0.1, 0.2, 0.9, 0.3, 0.1, 0.1, 0.1, 0.1, 0.4, 0.1, 0.1]
    labels = [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    # The step threshold (0.15) flags 0.2 and 0.4 among the 10 normal steps; the window one passed is not used.
    m = point_metrics(scored(keys, scores, labels, step_threshold=0.15), threshold=0.5)
    t = m["at_threshold"]
    assert t["threshold"] == 0.15 and t["fitted_on"] == "held-out step scores" and t["flagged_steps"] == 4
    assert t["false_alarms_normal_steps"] == 0.2 and t["recall"] == 1.0
    assert not m["warnings"]


def test_mostly_anomalous_labels_warn_of_an_inverted_normal_value():
    m = point_metrics(scored(["a"] * 4, [0.1, 0.2, 0.3, 0.4], [1, 1, 1, 0]), threshold=None)
    assert "is --normal-value the label of the normal steps" in m["warnings"][0]


def test_the_normal_value_takes_the_label_column_type():
    import pyarrow as pa

    assert normal_scalar(0, pa.string(), "y", "f", pa.array(["0", "1"])).as_py() == "0"
    assert normal_scalar("1", pa.int8(), "y", "f", pa.array([0, 1], pa.int8())).as_py() == 1
    with pytest.raises(SeqaeError, match=r"^f: --normal-value 'normal' is not a value of column 'y' \(int8\); "
                                         r"expected one of the labels found: 0, 1$"):
        normal_scalar("normal", pa.int8(), "y", "f", pa.array([0, 1, 1], pa.int8()))


@pytest.mark.slow
def test_long_layout_evaluation_end_to_end_agrees_with_embed_step_scores(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    from seqae.config import DataConfig, EmbedConfig, ModelConfig, TrainConfig
    from seqae.evaluate import evaluate
    from seqae.export import export
    from seqae.infer import embed
    from seqae.train import train

    rng = np.random.default_rng(0)
    t = np.arange(600)
    x = np.sin(t / 5).astype(np.float32) + rng.normal(0, 0.05, 600).astype(np.float32)
    label = np.zeros(600, np.int8)
    label[400:410] = 1
    x[400:410] += 3.0
    x[409] = np.nan  # the windows over it are rejected: the last anomalous steps get no score
    y = pa.array(label, pa.int8()).to_pylist()
    y[350] = None  # an unlabelled step: left out, counted
    for name, sl in (("train", slice(0, 300)), ("test", slice(300, 600))):
        (tmp_path / name).mkdir()
        pq.write_table(pa.table({"s": ["a"] * (sl.stop - sl.start), "t": t[sl], "x": x[sl],
                                 "y": pa.array(y[sl], pa.int8())}),
                       tmp_path / name / "p.parquet")
    data = DataConfig(layout="long", key_column="s", time_column="t", feature_columns=("x",), window=16, stride=2)
    result = train(str(tmp_path / "train"), tmp_path / "m", model_config=ModelConfig(units=4), data_config=data,
                   train_config=TrainConfig(max_epochs=2))
    assert result.metadata["training"]["validation"]["method"] == "time"
    export(tmp_path / "m")
    # Through the CLI, with the default method: it prints what each threshold used (auto resolves per fit).
    from typer.testing import CliRunner

    from seqae.cli import app

    # The model's bank holds the training split's windows: fitting on the training data would put the step
    # threshold at their distance to themselves (0), so it is refused in one line.
    exported = json.loads((tmp_path / "m" / "seqae.json").read_text())["export"]
    assert exported["neighbours"]["parity"]["passed"]
    assert exported["files"]["neighbours.onnx"]["graph"] == "neighbours"
    refused = CliRunner().invoke(app, ["--quiet", "threshold", "--model", str(tmp_path / "m"), "--data",
                                       str(tmp_path / "train"), "--false-alarm-rate", "0.05", "--device", "cpu"])
    assert refused.exit_code != 0 and "a shard the model trained on" in str(refused.exception)
    assert not (tmp_path / "m" / "threshold.json").exists()
    # Normal data the model did not train on: the same signal, other noise.
    (tmp_path / "normal").mkdir()
    pq.write_table(pa.table({"s": ["n"] * 300, "t": t[:300], "x": (np.sin(t[:300] / 5) + rng.normal(0, 0.05, 300)).astype(
        np.float32), "y": pa.array(np.zeros(300, np.int8))}), tmp_path / "normal" / "p.parquet")
    printed = CliRunner().invoke(app, ["--quiet", "threshold", "--model", str(tmp_path / "m"), "--data",
                                       str(tmp_path / "normal"), "--false-alarm-rate", "0.05", "--device", "cpu"])
    assert printed.exit_code == 0, printed.output
    fitted = json.loads((tmp_path / "m" / "threshold.json").read_text())
    shown = json.loads(printed.stdout)
    assert shown["method"] == ("pot" if fitted["tail"] else "percentile") and fitted["config"]["method"] == "auto"
    assert shown["steps"] == {"threshold": fitted["steps"]["threshold"], "statistic": "window_distance_min",
                              "method": "pot" if fitted["steps"]["tail"] else "percentile",
                              "fitted_on": fitted["steps"]["n_samples"]}
    # A long-layout model's threshold holds a step threshold, on the steps' own score (window 16, stride 2):
    # with the bank, the least nearest-window distance of the covering windows.
    assert fitted["steps"]["covering_windows"] == [8] and fitted["steps"]["statistic"] == "window_distance_min"
    report = evaluate(tmp_path / "m", str(tmp_path / "test"), tmp_path / "eval", label_column="y", normal_value=0)
    m = report["points"]
    assert m["at_threshold"]["threshold"] == fitted["steps"]["threshold"]
    assert m["at_threshold"]["fitted_on"] == "step scores of normal windows against the bank"
    assert m["steps_unlabelled"] == 1 and m["anomalous_steps_unscored"] > 0
    assert m["anomalous_steps"] + m["anomalous_steps_unscored"] == 10 and m["segments"] == 1
    assert m["steps"] + m["steps_unscored"] + m["steps_unlabelled"] == 300
    assert any("have no score" in w for w in m["warnings"])
    with pytest.raises(SeqaeError, match="is the model's key, time or a feature column"):
        evaluate(tmp_path / "m", str(tmp_path / "test"), tmp_path / "eval2", label_column="x", normal_value=0)
    assert (tmp_path / "eval" / "series_scores.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["points"]["roc_auc"] == m["roc_auc"]
    assert "UCR hit rate" in (tmp_path / "eval" / "report.md").read_text() and "baseline" not in m
    # Beside the nearest-training-window baseline: every full training window at stride 1 (300 steps,
    # window 16); a +3 step on a sine is far from all of them, so it ranks the anomaly near the top.
    beside = evaluate(tmp_path / "m", str(tmp_path / "test"), tmp_path / "eval3", label_column="y", normal_value=0,
                      baseline_data=str(tmp_path / "train"))["points"]
    b = beside["baseline"]
    assert b["bank_windows"] == b["windows_read"] == 300 - 16 + 1 and b["bank_stride"] == 1
    assert b["roc_auc"] > 0.9 and b["pr_auc"] > 0.5 and b["hit_rate"] == 1.0
    assert beside["roc_auc"] == m["roc_auc"]  # the model's own score is unchanged
    # with its bank (the default) the model's statistic is the baseline itself: the same windows, the same spread
    assert b["model_roc_auc_unscaled"] == b["roc_auc"]
    assert any("baseline ranks" in w for w in beside["warnings"]) == (b["roc_auc"] > m["roc_auc"])
    assert "baseline, nearest training window" in (tmp_path / "eval3" / "report.md").read_text()
    # The same scores as `embed --step-scores` writes, so the report can be redone from the outputs.
    embed(tmp_path / "m", str(tmp_path / "test"), tmp_path / "out", EmbedConfig(device="cpu", step_scores=True))
    steps = pq.read_table(tmp_path / "out" / "steps" / "p.parquet")
    entry = json.loads((tmp_path / "out" / "_seqae" / "manifest" / "p.parquet.json").read_text())
    assert entry["steps_written"] == steps.num_rows == 300 - entry["steps_unscored"] and entry["steps_unscored"] > 0
    assert {"score", "is_anomaly", "window_error_mean", "window_error_min", "window_distance_min"} <= set(
        steps.column_names)
    # The flag is the step threshold on the step score (partly covered steps against their own run's
    # threshold), as the report's.
    from seqae.thresholds import Threshold

    adjusted = Threshold.load(tmp_path / "m").adjust_steps(steps.column("window_distance_min").to_numpy(),
                                                          steps.column("windows").to_numpy())
    assert (adjusted != steps.column("window_distance_min").to_numpy()).any()  # the series' ends
    flagged = adjusted > fitted["steps"]["threshold"]
    assert steps.column("is_anomaly").to_numpy().tolist() == flagged.tolist()
    labels = dict(zip(range(300, 600), y[300:]))
    keep = [labels[t] is not None for t in steps.column("t").to_pylist()]
    truth = np.array([labels[t] == 1 for t in steps.column("t").to_pylist()])[keep]
    expected = roc_auc_score(truth, steps.column("step_error_mean").to_numpy()[keep])
    assert m["roc_auc_of_step_error_mean"] == pytest.approx(expected, abs=1e-4)
    expected = roc_auc_score(truth, adjusted[keep])
    assert m["roc_auc"] == pytest.approx(expected, abs=1e-4)
    expected = roc_auc_score(truth, steps.column("window_error_mean").to_numpy()[keep])
    assert m["roc_auc_of_window_error_mean"] == pytest.approx(expected, abs=1e-4)
    expected = roc_auc_score(truth, steps.column("window_error_min").to_numpy()[keep])
    assert m["roc_auc_of_window_error_min"] == pytest.approx(expected, abs=1e-4)
    # Each window's nearest_distance is its distance to the nearest window of the training data (every
    # full window at stride 1), as seqae.baseline computes it in float64: the peer of --baseline-data.
    from seqae.baseline import NearestWindows
    from seqae.modeldir import ModelInfo

    info = ModelInfo.read(tmp_path / "m")
    bank = NearestWindows.build(str(tmp_path / "train"), info.data, 1, info.metadata["normalization"])
    assert len(bank.bank) == exported["neighbours"]["bank_windows"] == 300 - 16 + 1
    windows = pq.read_table(tmp_path / "out" / "embeddings" / "p.parquet")
    reader = [b for b, _ in ShardReader(resolve_shards(str(tmp_path / "test"))[0], info.data, num_features=1)]
    values = np.concatenate([b.values for b in reader])
    lengths = np.concatenate([b.lengths for b in reader])
    np.testing.assert_allclose(windows.column("nearest_distance").to_numpy(), bank.distances(values, lengths),
                               rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_baseline_step_scores_match_a_by_hand_count_over_series_shards_and_rejected_windows(tmp_path):
    """Every scored step's baseline against a by-hand computation: two features, a series split across
    training shards (its windows do not cross them), NaNs that reject windows in both parts, two test
    shards of two series each, shorter trailing windows, read batches smaller than a series."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from numpy.lib.stride_tricks import sliding_window_view

    from seqae.config import DataConfig, ExportConfig, ModelConfig, TrainConfig
    from seqae.export import export
    from seqae.points import score_steps
    from seqae.train import train

    rng = np.random.default_rng(0)
    window, stride = 8, 3

    def series(n, phase):
        t = np.arange(n)
        x = np.sin(t / 3 + phase).astype(np.float32) + rng.normal(0, 0.05, n).astype(np.float32)
        return t, x, (np.cos(t / 4 + phase) * 5 + 2).astype(np.float32)

    def write(path, parts):
        path.parent.mkdir(exist_ok=True)
        cols = {c: np.concatenate([p[i] for p in parts]) for i, c in enumerate(("t", "x", "y", "lab"))}
        keys = sum(([p[4]] * len(p[0]) for p in parts), [])
        pq.write_table(pa.table({"s": keys, "t": cols["t"].astype(np.int64), "x": cols["x"], "y": cols["y"],
                                 "lab": cols["lab"].astype(np.int8)}), path)

    ta, xa, ya = series(120, 0)
    xa[50] = np.nan
    tb, xb, yb = series(90, 1)
    tc, xc, yc = series(70, 2)
    z = lambda n: np.zeros(n, np.int8)  # noqa: E731
    train_parts = [[(ta, xa, ya, z(120), "a"), (tb[:40], xb[:40], yb[:40], z(40), "b")],
                   [(tb[40:], xb[40:], yb[40:], z(50), "b"), (tc, xc, yc, z(70), "c")]]
    for i, parts in enumerate(train_parts):
        write(tmp_path / "train" / f"p{i}.parquet", parts)
    tests = []
    for i, (n, phase) in enumerate([(100, 0.3), (77, 1.3), (64, 2.2), (95, 0.7)]):
        t, x, y = series(n, phase)
        lab = z(n)
        x[20 + 7 * i:25 + 7 * i] += 2.5
        lab[20 + 7 * i:25 + 7 * i] = 1
        if i == 1:
            x[60] = np.nan
        tests.append((t, x, y, lab, f"k{i}"))
    write(tmp_path / "test" / "q0.parquet", tests[:2])
    write(tmp_path / "test" / "q1.parquet", tests[2:])
    data = DataConfig(layout="long", key_column="s", time_column="t", feature_columns=("x", "y"), window=window,
                      stride=stride)
    model = train(str(tmp_path / "train"), tmp_path / "m", model_config=ModelConfig(units=4), data_config=data,
                  train_config=TrainConfig(max_epochs=1))
    export(tmp_path / "m", ExportConfig(neighbours=False))  # the peer beside a model that scores by its errors
    norm = model.metadata["normalization"]
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])

    def standardised(t, x, y):
        return (np.stack([x, y], axis=1).astype(np.float64) - mean) / std

    bank = np.concatenate([sliding_window_view(standardised(*p[:3]), (window, 2))[:, 0].reshape(-1, window * 2)
                           for parts in train_parts for p in parts])
    bank = bank[np.isfinite(bank).all(axis=1)]  # windows over the NaN are rejected
    expected, expected_mean = {}, {}
    for t, x, y, _, key in tests:
        v = standardised(t, x, y)
        n = len(v)
        starts = list(range(0, n - window + 1, stride))
        spans = [(s, s + window) for s in starts]
        if starts[-1] + window < n:  # the shorter trailing window
            spans.append((starts[-1] + stride, n))
        best, total, count = np.full(n, np.inf), np.zeros(n), np.zeros(n)
        for a, b in spans:
            w = v[a:b].reshape(-1)
            if np.isfinite(w).all():
                d = ((bank[:, :len(w)] - w) ** 2).mean(axis=1).min()
                best[a:b] = np.minimum(best[a:b], d)
                total[a:b] += d
                count[a:b] += 1
        expected |= {(key, int(t[i])): best[i] for i in range(n) if np.isfinite(best[i])}
        expected_mean |= {(key, int(t[i])): total[i] / count[i] for i in range(n) if count[i]}

    scored = score_steps(tmp_path / "m", str(tmp_path / "test"), "lab", 0, device="cpu", read_batch_size=37,
                         baseline_data=str(tmp_path / "train"))
    got = {(k, int(t)): b for k, t, b in zip(scored.keys, scored.times, scored.baseline)}
    assert set(got) == set(expected) and len(got) == 100 + 77 + 64 + 95 - 4  # steps 59-62 of k1: every window over them holds its NaN
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-6, atol=1e-9)
    info = scored.baseline_info
    assert info["bank_windows"] == info["windows_read"] == len(bank) and info["windows_rejected"] == window
    assert info["anomalous_steps"] == 0 and not any("baseline data holds" in w for w in
                                                    point_metrics(scored, None)["warnings"])
    # The labelled test data as its own baseline: its anomalies are counted and warned of.
    itself = score_steps(tmp_path / "m", str(tmp_path / "test"), "lab", 0, device="cpu",
                         baseline_data=str(tmp_path / "test"))
    assert itself.baseline_info["anomalous_steps"] == 20
    assert any("the baseline data holds 20 step(s) labelled anomalous" in w
               for w in point_metrics(itself, None)["warnings"])
    # A threshold file from before step thresholds scores steps by window_error_mean: the baseline is
    # spread the same way, the mean over the covering windows.
    import json

    from seqae.anomaly import fit_threshold
    from seqae.thresholds import canonical_sha256

    fit_threshold(tmp_path / "m", data=str(tmp_path / "train"), device="cpu")
    path = tmp_path / "m" / "threshold.json"
    body = json.loads(path.read_text())
    body["steps"]["statistic"] = "window_error_mean"
    body.pop("sha256")
    path.write_text(json.dumps({**body, "sha256": canonical_sha256(body)}))
    by_mean = score_steps(tmp_path / "m", str(tmp_path / "test"), "lab", 0, device="cpu", read_batch_size=37,
                          baseline_data=str(tmp_path / "train"))
    assert by_mean.statistic == "window_error_mean"
    got = {(k, int(t)): b for k, t, b in zip(by_mean.keys, by_mean.times, by_mean.baseline)}
    np.testing.assert_allclose([got[k] for k in expected_mean], list(expected_mean.values()), rtol=1e-6, atol=1e-9)
    # A label column missing from any test shard is found from the footers, before the bank is read.
    (tmp_path / "unlabelled").mkdir()
    pq.write_table(pq.read_table(tmp_path / "test" / "q1.parquet").drop_columns(["lab"]),
                   tmp_path / "unlabelled" / "q1.parquet")
    pq.write_table(pq.read_table(tmp_path / "test" / "q0.parquet"), tmp_path / "unlabelled" / "q0.parquet")
    with pytest.raises(SeqaeError, match=r"q1.parquet: column 'lab' is missing"):
        score_steps(tmp_path / "m", str(tmp_path / "unlabelled"), "lab", 0, device="cpu",
                    baseline_data=str(tmp_path / "no-such-folder"))
    # An unreadable test shard is named as seqae names it, not as pyarrow does.
    (tmp_path / "unlabelled" / "q1.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SeqaeError, match=r"q1.parquet: cannot be read as Parquet"):
        score_steps(tmp_path / "m", str(tmp_path / "unlabelled"), "lab", 0, device="cpu",
                    baseline_data=str(tmp_path / "train"))
