"""The ECG5000 anomaly result, reproducible with one command, over members of the model family.

    python benchmarks/ecg5000_family.py [--configs default,no-reverse,...] [--seeds 0,1] [--epochs 300]
        [--set batch_size=128 --set learning_rate=0.004]

``--set`` overrides a ``ModelConfig`` or ``TrainConfig`` field of every configuration run (the results
name the overrides).

For each configuration and seed: train on the normal beats (label 1) of a training part (ids < 3000;
10% of those held out by the seeded key hash for early stopping and the reference), export behind the
parity gate, fit an *unsupervised* threshold (the default method, auto: peaks over threshold where the
held-out beats hold a tail to fit, as the README's 280-odd do, else the empirical percentile; 1% false
alarms, on the held-out normal beats only: no label of an abnormal beat is used), then score all 5000 beats and report
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


def split_overrides(pairs: list[str]) -> tuple[dict, dict]:
    """``["batch_size=128", "learning_rate=0.004"]`` -> (ModelConfig fields, TrainConfig fields)."""
    import dataclasses
    import json as _json

    from seqae.config import ModelConfig, TrainConfig

    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model, train = {}, {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            value = _json.loads(raw)
        except ValueError:
            value = raw
        if key in model_fields:
            model[key] = value
        elif key in train_fields:
            train[key] = value
        else:
            raise SystemExit(f"--set {pair}: {key!r} is neither a ModelConfig nor a TrainConfig field")
    return model, train


def parity_max_rel(exported) -> dict[str, float]:
    """An export's worst relative difference from Keras on the sequence errors, per ``file:output``
    (from its ``ExportResult``): how near a trained model came to the parity gate's
    ``ExportConfig.error_rtol`` (embeddings have an absolute bound and steps one relative to the row,
    so an elementwise ratio says nothing of them)."""
    return {key: float(f"{w['max_rel']:.3g}") for key, w in sorted(exported.parity["worst"].items())
            if key.endswith((":recon_error", ":pred_error"))}


#: The README's training part: the normal beats among ids 0-2999.
README_POOL = (0, 3000)


def run(config_name: str, seed: int, epochs: int, work: Path, overrides: list[str] = (),
        pool: tuple[int, int] = README_POOL) -> dict:
    """One configuration and seed. ``pool``: the ids ``[low, high)`` whose normal beats are trained on
    (the README's ids < 3000 by default; ``make quality`` also runs ids 2000-4999, a split no default
    was chosen on); the metrics are on every other beat."""
    import pyarrow as pa
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    from seqae.anomaly import fit_threshold
    from seqae.config import ModelConfig, TrainConfig
    from seqae.evaluate import probe, raw_values, score_labelled
    from seqae.export import export
    from seqae.thresholds import ThresholdConfig
    from seqae.train import split_of, train

    low, high = pool
    model_dir = work / (f"{config_name}-{seed}" + ("" if pool == README_POOL else f"-ids-{low}-{high}"))
    started = time.time()
    model_set, train_set = split_overrides(list(overrides))
    trained = train(str(work / "data"), model_dir, model_config=ModelConfig(**{**CONFIGS[config_name], **model_set}),
                    train_config=TrainConfig(**{"row_filter": f"label == 1 and id >= {low} and id < {high}", "seed": seed,
                                                "max_epochs": epochs, **train_set}))
    exported = export(model_dir)
    threshold = fit_threshold(model_dir, ThresholdConfig(false_alarm_rate=0.01))  # auto: pot where it can fit
    scored = score_labelled(model_dir, str(work / "data"), "label", device="cpu")
    held_out = split_of(pa.array(scored.keys), seed, 0.1)
    trained_on = (scored.labels == 1) & (scored.keys >= low) & (scored.keys < high) & ~held_out
    unseen = ~trained_on
    anomalous = scored.labels[unseen] != 1
    errors = scored.errors[unseen]
    flagged = errors > threshold.threshold_
    t = trained.metadata["training"]
    return {"config": config_name + "".join(f" {o}" for o in overrides), "seed": seed,
            "model": trained.metadata["model"], "batch_size": t["config"]["batch_size"], "epochs": t["epochs"],
            "best_epoch": t["best_epoch"], "train_rows": t["train_rows"],
            "validation_rows": t["validation_rows"], "pool": [low, high], "minutes": round((time.time() - started) / 60, 1),
            "unseen_rows": int(unseen.sum()), "unseen_anomalous": int(anomalous.sum()),
            "roc_auc": round(float(roc_auc_score(anomalous, errors)), 4),
            "pr_auc": round(float(average_precision_score(anomalous, errors)), 4),
            "f1_at_unsupervised_threshold": round(float(f1_score(anomalous, flagged)), 4),
            "false_alarm_rate_on_unseen_normal": round(float(flagged[~anomalous].mean()), 4),
            "threshold": threshold.threshold_, "threshold_method": threshold.method_, "parity_max_rel": parity_max_rel(exported),
            "probe": probe(scored, scored.keys < 500, raw_values(model_dir, str(work / "data")))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a ModelConfig or TrainConfig field in every run")
    args = parser.parse_args()
    split_overrides(args.set)  # fail on a wrong name before any training

    from seqae.datasets import write_dataset

    work = Path(tempfile.mkdtemp(prefix="seqae-ecg-"))
    write_dataset("ecg5000", work / "data", shards=4)
    print(f"models under {work}", flush=True)
    out = Path("bench/results") / f"ecg5000-family-{date.today()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Runs of the same day accumulate (a sweep is often run a configuration at a time); a rerun of the
    # same configuration (model and batch size, so a changed default is a new entry) and seed replaces
    # its earlier entry.
    def key(r):
        return r["config"], r["seed"], json.dumps(r["model"], sort_keys=True), r.get("batch_size", 32)

    kept = {key(r): r for r in (json.loads(out.read_text()) if out.exists() else [])}
    results = []
    for config_name in args.configs.split(","):
        for seed in map(int, args.seeds.split(",")):
            results.append(run(config_name, seed, args.epochs, work, args.set))
            kept[key(results[-1])] = results[-1]
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
