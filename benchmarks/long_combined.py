"""Does the model's step score add anything to the nearest-training-window baseline? (issue #22, item 3)

    python benchmarks/long_combined.py [--work DIR] [--out bench/results] [--cases long-ecg,long-ecg-rhythm,ucr-135]

Trains the default model of ``make quality``'s long cases (seed 0, one TensorFlow thread: the same
models as the suite's), scores the test part per step with ``seqae.points.score_steps(baseline_data=
TRAIN)`` (the model's step score and the baseline's, ``seqae.baseline``, on the same steps), and ranks
the anomalous steps by mixtures of the two: each score divided by its median over the scored steps,
then ``w * model + (1 - w) * baseline`` for a grid of weights ``w``; the two ranks' mean and maximum;
the geometric mean. The medians are the test steps' own (mostly normal), and every weight is shown,
so the best mixture is an upper bound on what a mixture fitted without labels could do.

Step ROC-AUC and PR-AUC of each (scikit-learn) into ``<out>/long-combined-<date>.json``, and printed.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)


def metrics(y: np.ndarray, score: np.ndarray) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"roc_auc": round(float(roc_auc_score(y, score)), 4), "pr_auc": round(float(average_precision_score(y, score)), 4)}


def mixtures(y: np.ndarray, model: np.ndarray, baseline: np.ndarray) -> dict:
    from scipy.stats import rankdata

    a, b = model / np.median(model), baseline / np.median(baseline)
    ra, rb = rankdata(model) / len(model), rankdata(baseline) / len(baseline)
    return {**{f"median_scaled_w{w}": metrics(y, w * a + (1 - w) * b) for w in WEIGHTS},
            "rank_mean": metrics(y, ra + rb), "rank_max": metrics(y, np.maximum(ra, rb)),
            "geometric_mean": metrics(y, np.log(np.maximum(a, 1e-12)) + np.log(np.maximum(b, 1e-12)))}


def run_case(name: str, work: Path) -> dict:
    import quality as q

    from seqae import points
    from seqae.datasets import write_long_dataset

    plan, folder = q.FULL, work / name
    if name == "ucr-135":
        write_long_dataset("ucr-anomaly", folder, overwrite=True)
        model_dir, *_ = q.long_model(name, folder, 0, plan, q.UCR_WINDOW, 1, work)
    else:
        shape = dataclasses.replace(plan.long_shape, rhythm=q.LONG_RHYTHM if name == "long-ecg-rhythm" else 0.0)
        q.long_ecg_set(folder, shape)
        model_dir, *_ = q.long_model(name, folder, 0, plan, q.LONG_WINDOW, q.LONG_STRIDE, work)
    scored = points.score_steps(model_dir, str(folder / "test"), "is_anomaly", 0, device="cpu",
                                baseline_data=str(folder / "train"))
    y, model, baseline = scored.anomalous, scored.score.astype(np.float64), scored.baseline.astype(np.float64)
    return {"steps": int(len(y)), "anomalous_steps": int(y.sum()), "statistic": scored.statistic,
            "bank": scored.baseline_info, "model": metrics(y, model), "baseline": metrics(y, baseline),
            "mixtures": mixtures(y, model, baseline)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", help="a folder for the data and models (default: a temporary one)")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--cases", default="long-ecg,long-ecg-rhythm,ucr-135")
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)  # as make quality runs a case
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from seqae.storage import write_json

    work = Path(args.work or tempfile.mkdtemp(prefix="seqae-combined-"))
    result = {"what": __doc__.split("\n\n")[0], "weights": list(WEIGHTS), "cases": {}}
    for name in args.cases.split(","):
        started = time.perf_counter()
        case = run_case(name, work / name)
        case["seconds"] = round(time.perf_counter() - started, 1)
        result["cases"][name] = case
        best = max(case["mixtures"].items(), key=lambda kv: kv[1]["roc_auc"])
        print(f"{name}: model {case['model']['roc_auc']}, baseline {case['baseline']['roc_auc']}, best mixture "
              f"{best[0]} {best[1]['roc_auc']} ({case['seconds']} s)", flush=True)
    out = Path(args.out) / f"long-combined-{date.today().isoformat()}.json"
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
