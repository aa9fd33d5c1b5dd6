"""The ECG5000 anomaly result, reproducible with one command, over members of the model family.

    python benchmarks/ecg5000_family.py [--configs default,no-reverse,...] [--seeds 0,1] [--epochs 300]

For each configuration and seed: train on the normal beats (label 1) of a training part (ids < 3000;
10% of those held out by the seeded key hash for early stopping and the reference), export behind the
parity gate, fit an *unsupervised* threshold (peaks over threshold, 1% false alarms, on the held-out
normal beats only: no label of an abnormal beat is used), then score all 5000 beats and report
ROC-AUC, PR-AUC and F1 at that threshold on the beats the model never trained on (every abnormal beat,
and the normal beats of ids >= 3000 or held out), plus the linear probe on the archive's own
train/test split (ids < 500 are its TRAIN file). Writes bench/results/ecg5000-family-<date>.json and
prints a Markdown table.
"""

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

CONFIGS = {
    "default": {},  # reconstruct, reversed, unconditioned, 64 units
    "no-reverse": {"reverse_target": False},
    "conditioned": {"decoder": "conditioned"},
    "composite": {"mode": "composite", "horizon": 10},
    "state": {"decoder": "state"},  # reconstruct, reversed, the decoder starts from the state, no input
}


def run(config_name: str, seed: int, epochs: int, work: Path) -> dict:
    import pyarrow as pa
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from seqae.anomaly import fit_threshold
    from seqae.config import ModelConfig, TrainConfig
    from seqae.evaluate import probe, raw_values, score_labelled
    from seqae.export import export
    from seqae.thresholds import ThresholdConfig
    from seqae.train import split_of, train

    model_dir = work / f"{config_name}-{seed}"
    started = time.time()
    trained = train(str(work / "data"), model_dir, model_config=ModelConfig(**CONFIGS[config_name]),
                    train_config=TrainConfig(row_filter="label == 1 and id < 3000", seed=seed, max_epochs=epochs))
    export(model_dir)
    threshold = fit_threshold(model_dir, ThresholdConfig(method="pot", false_alarm_rate=0.01))
    scored = score_labelled(model_dir, str(work / "data"), "label", device="cpu")
    held_out = split_of(pa.array(scored.keys), seed, 0.1)
    trained_on = (scored.labels == 1) & (scored.keys < 3000) & ~held_out
    unseen = ~trained_on
    anomalous = scored.labels[unseen] != 1
    errors = scored.errors[unseen]
    flagged = errors > threshold.threshold_
    t = trained.metadata["training"]
    return {"config": config_name, "seed": seed, "model": trained.metadata["model"], "epochs": t["epochs"],
            "best_epoch": t["best_epoch"], "train_rows": t["train_rows"], "minutes": round((time.time() - started) / 60, 1),
            "unseen_rows": int(unseen.sum()), "unseen_anomalous": int(anomalous.sum()),
            "roc_auc": round(float(roc_auc_score(anomalous, errors)), 4),
            "pr_auc": round(float(average_precision_score(anomalous, errors)), 4),
            "f1_at_unsupervised_threshold": round(float(f1_score(anomalous, flagged)), 4),
            "false_alarm_rate_on_unseen_normal": round(float(flagged[~anomalous].mean()), 4),
            "threshold": threshold.threshold_,
            "probe": probe(scored, scored.keys < 500, raw_values(model_dir, str(work / "data")))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args()

    from seqae.datasets import write_dataset

    work = Path(tempfile.mkdtemp(prefix="seqae-ecg-"))
    write_dataset("ecg5000", work / "data", shards=4)
    print(f"models under {work}", flush=True)
    out = Path("bench/results") / f"ecg5000-family-{date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Runs of the same day accumulate (a sweep is often run a configuration at a time); a rerun of a
    # configuration and seed replaces its earlier entry.
    kept = {(r["config"], r["seed"]): r for r in (json.loads(out.read_text()) if out.exists() else [])}
    results = []
    for config_name in args.configs.split(","):
        for seed in map(int, args.seeds.split(",")):
            results.append(run(config_name, seed, args.epochs, work))
            kept[config_name, seed] = results[-1]
            out.write_text(json.dumps(list(kept.values()), indent=2))  # after each run: a long sweep keeps what it has
            print(json.dumps(results[-1]), flush=True)
    print("| configuration | seed | epochs | ROC-AUC | PR-AUC | F1 at the unsupervised threshold | probe accuracy "
          "(embeddings / raw logistic / raw 1-NN) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in results:
        p = r["probe"]
        print(f"| {r['config']} | {r['seed']} | {r['epochs']} | {r['roc_auc']} | {r['pr_auc']} | "
              f"{r['f1_at_unsupervised_threshold']} | {p['logistic_regression_on_embeddings']} / "
              f"{p['logistic_regression_on_raw_values']} / {p['one_nn_euclidean_on_raw_values']} |")
    print(f"medians: ROC-AUC {np.median([r['roc_auc'] for r in results]):.4f}; wrote {out}")


if __name__ == "__main__":
    main()
