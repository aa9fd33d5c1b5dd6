"""Step scores for long series, side by side: what else an LSTM autoencoder's windows could score steps
by, against the nearest-training-window peer, on ``make quality``'s long ECG set (issue #22, item 3).

    python benchmarks/long_scores.py [--work DIR] [--out bench/results] [--threads 2]

Trains (or reuses, from ``--work``) the default model on the long ECG set with the training windows
at the set's stride (10) and at stride 1 (every phase of the beat: ten times the rows, the same step
budget), then scores the test windows (stride 10) five ways, each spread to steps as seqae's
``window_error_mean`` is (the mean over the windows covering a step; seqae's step score was that mean
when this was measured, 2026-12-03, and is the least since 2026-12-04):

- ``recon``: the window's reconstruction error (what seqae scores by);
- ``embedding_nn``: the squared distance of the window's embedding to its nearest training window's
  (every training window, stride 1): the peer's idea, in the embedding space;
- ``embedding_nn5``: the mean over the 5 nearest;
- ``recon_over_nn5``: the reconstruction error over the mean error of those 5 neighbours (how unusual
  the error is for windows like it);
- ``recon_and_nn_ranks``: the sum of the ranks of ``recon`` and ``embedding_nn``.

Step ROC-AUC of each (scikit-learn), beside the peer's (``quality.nearest_window_peer``), into
``<out>/long-scores-<date>.json``. Keras ``predict`` on full windows only (seqae's trailing shorter
window is left out; the peer does the same).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402


def series(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(values, is_anomaly) of each series, in time order."""
    table = pq.read_table(folder).sort_by([("series", "ascending"), ("time", "ascending")])
    out = []
    for key in np.unique(table.column("series").to_numpy()):
        part = table.filter(pc.equal(table.column("series"), key))
        out.append((part.column("value").to_numpy().astype(np.float32),
                    part.column("is_anomaly").to_numpy().astype(bool)))
    return out


def spread(window_scores: np.ndarray, starts: np.ndarray, n: int, window: int) -> np.ndarray:
    total, covered = np.zeros(n), np.zeros(n)
    for score, start in zip(window_scores, starts):
        total[start:start + window] += score
        covered[start:start + window] += 1
    return total / covered


def trained(work: Path, folder: Path, stride: int, seed: int) -> tuple[Path, dict]:
    from seqae.config import DataConfig, ModelConfig, TrainConfig
    from seqae.train import train

    model_dir = work / f"model-stride{stride}-seed{seed}"
    if not (model_dir / "seqae.json").exists():
        data_config = DataConfig(layout="long", key_column="series", time_column="time", feature_columns=("value",),
                                 window=quality.LONG_WINDOW, stride=stride)
        train(str(folder / "train"), model_dir, model_config=ModelConfig(), data_config=data_config,
              train_config=TrainConfig(seed=seed))
    t = json.loads((model_dir / "seqae.json").read_text())["training"]
    return model_dir, {k: t[k] for k in ("train_rows", "steps", "epochs", "best_epoch", "seconds")}


def scores_of(model_dir: Path, train: list, test: list) -> tuple[dict[str, np.ndarray], np.ndarray]:
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.stats import rankdata

    from seqae.model import load_model

    window, stride = quality.LONG_WINDOW, quality.LONG_STRIDE
    model = load_model(model_dir)

    def run(windows):
        out = model.predict(windows[..., None], np.full(len(windows), window, np.int32), batch_size=2048)
        return out["embedding"].astype(np.float64), out["recon_error"].astype(np.float64)

    bank = [run(sliding_window_view(x, window)) for x, _ in train]
    embeddings, errors = np.concatenate([e for e, _ in bank]), np.concatenate([r for _, r in bank])
    squares = (embeddings ** 2).sum(axis=1)
    steps: dict[str, list] = {}
    labels = []
    for x, y in test:
        starts = quality.window_starts(len(x), window, stride)
        embedding, error = run(sliding_window_view(x, window)[starts])
        distance = np.maximum(squares[None, :] - 2 * embedding @ embeddings.T + (embedding ** 2).sum(1)[:, None], 0)
        nearest = np.argsort(distance, axis=1)[:, :5]
        per_window = {"recon": error, "embedding_nn": distance.min(axis=1),
                      "embedding_nn5": np.take_along_axis(distance, nearest, axis=1).mean(axis=1),
                      "recon_over_nn5": error / errors[nearest].mean(axis=1)}
        for name, values in per_window.items():
            steps.setdefault(name, []).append(spread(values, starts, len(x), window))
        labels.append(y)
    out = {name: np.concatenate(parts) for name, parts in steps.items()}
    out["recon_and_nn_ranks"] = rankdata(out["recon"]) + rankdata(out["embedding_nn"])
    return out, np.concatenate(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=None, help="keeps the data and models between runs (default: a new temp dir)")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import tempfile

    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="seqae-long-scores-"))
    folder = work / "long-ecg"
    if not (folder / "built.json").exists():
        (folder / "built.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / "built.json").write_text(json.dumps(quality.long_ecg_set(folder, quality.LongEcgShape())))
    train, test = series(folder / "train"), series(folder / "test")
    peer = quality.nearest_window_peer([x for x, _ in train], [x for x, _ in test], quality.LONG_WINDOW,
                                       quality.LONG_STRIDE)
    labels = np.concatenate([y for _, y in test])
    result = {"date": date.today().isoformat(), "data": json.loads((folder / "built.json").read_text()),
              "peer_roc_auc": round(float(roc_auc_score(labels, np.concatenate([p["window"] for p in peer]))), 4),
              "threads": args.threads, "models": {}}
    for stride in (quality.LONG_STRIDE, 1):
        started = time.perf_counter()
        model_dir, training = trained(work, folder, stride, args.seed)
        scores, y = scores_of(model_dir, train, test)
        result["models"][f"train stride {stride}"] = {
            "training": training, "seed": args.seed,
            "step_roc_auc": {name: round(float(roc_auc_score(y, s)), 4) for name, s in scores.items()},
            "seconds": round(time.perf_counter() - started, 1)}
        print(stride, json.dumps(result["models"][f"train stride {stride}"]), flush=True)
    out = Path(args.out) / f"long-scores-{result['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}: peer {result['peer_roc_auc']}", flush=True)


if __name__ == "__main__":
    main()
