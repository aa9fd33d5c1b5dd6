"""Training rows per second, side by side in one run: seqae's Parquet pipeline against the same model
fitted on in-memory arrays, and the LSTM autoencoder of the usual Keras tutorial (100 tanh units,
RepeatVector decoder, in-memory arrays, batch 64), on the ECG5000 normal beats.

    python benchmarks/train_throughput.py [--batch-sizes 32,128] [--epochs 4] [--rounds 3] [--jit]

Rows/s is the training rows over the median epoch time of epochs 2.. (the first traces and fills
caches) of every round; the runs alternate within a round and the order flips each round, so that
a change of load on a shared machine falls on all of them. On this project's 2-core machine epoch
times come in two modes (about 3.5 s and 5 s for the same epoch), so a median needs many epochs. Writes
bench/results/train-throughput-<date>.json.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np


class EpochTimer:
    def __init__(self):
        import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.times.append(time.perf_counter() - outer.start)

        self.times: list[float] = []
        self.callback = Callback()

    def steady(self) -> list[float]:
        """Epoch times after the first (which traces the step function)."""
        return self.times[1:] or self.times


def measure(data: str, batch_size: int, epochs: int, jit: bool = False, tutorial: bool = True,
            rounds: int = 3) -> dict[str, float]:
    """Rows/s of one epoch (median of epochs 2.. over ``rounds``) for each way of fitting the ECG normal
    beats at ``data``."""
    import keras

    from seqae import names
    from seqae.config import DataConfig, ModelConfig, TrainConfig
    from seqae.data import RowFilter
    from seqae.model import build_autoencoder, compile_autoencoder, training_loss
    from seqae.train import iter_split, make_dataset, plan_data

    tc = TrainConfig(batch_size=batch_size, row_filter="label == 1", max_epochs=epochs)
    dc = DataConfig()
    plan = plan_data(data, dc, tc)
    cfg = ModelConfig(num_features=plan.num_features).resolve_patch(plan.longest)  # as train() builds it
    targets = tuple(training_loss(cfg)[0])
    # the same training rows as the Parquet pipeline sees (the filter applies in the reader there)
    arrays = list(iter_split(plan.shards, dc, tc, validation=False, num_features=1,
                             row_filter=RowFilter.parse(tc.row_filter), split=plan.split))
    values = np.concatenate([v for v, _ in arrays])
    lengths = np.concatenate([n for _, n in arrays])
    rows = len(lengths)
    assert rows == plan.train_rows
    zeros = {k: np.zeros(rows, np.float32) for k in targets}

    def seqae_model(jit=False):
        keras.utils.set_random_seed(0)
        model = build_autoencoder(cfg, plan.normalizer.mean_, plan.normalizer.std_)
        compile_autoencoder(model, cfg)
        if jit:
            model.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=True)
        return model

    def parquet(jit=False):
        return lambda callback: seqae_model(jit).fit(
            make_dataset(plan, dc, tc, validation=False, targets=targets), epochs=epochs, verbose=0,
            callbacks=[callback], shuffle=False)

    def in_memory(callback):
        seqae_model().fit({names.INPUT_VALUES: values, names.INPUT_LENGTHS: lengths}, zeros,
                          batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[callback])

    def tutorial_model(callback):
        # The tutorial's model: 100 tanh units, batch 64, in-memory arrays of the 140-step beats.
        keras.utils.set_random_seed(0)
        x = values.astype(np.float32)
        model = keras.Sequential([
            keras.Input((x.shape[1], 1)), keras.layers.LSTM(100), keras.layers.RepeatVector(x.shape[1]),
            keras.layers.LSTM(100, return_sequences=True), keras.layers.TimeDistributed(keras.layers.Dense(1))])
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, x, batch_size=64, epochs=epochs, verbose=0, callbacks=[callback])

    fits = {"seqae, from Parquet (tf.data)": parquet(), "seqae model, in-memory arrays": in_memory}
    if jit:
        fits["seqae, from Parquet, XLA"] = parquet(jit=True)
    if tutorial:
        fits["Keras tutorial model (100 units, batch 64), in-memory arrays"] = tutorial_model
    times: dict[str, list[float]] = {name: [] for name in fits}
    for r in range(rounds):
        for name in (list(fits) if r % 2 == 0 else list(fits)[::-1]):
            timer = EpochTimer()
            fits[name](timer.callback)
            times[name] += timer.steady()
    runs = {name: rows / statistics.median(t) for name, t in times.items()}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jit", action="store_true", help="also the seqae model compiled with XLA (jit_compile)")
    parser.add_argument("--out", default=f"bench/results/train-throughput-{date.today().isoformat()}.json")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from seqae.datasets import write_dataset

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset("ecg5000", Path(tmp) / "data", shards=4)
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        for i, batch_size in enumerate(sizes):
            runs = measure(str(Path(tmp) / "data"), batch_size, args.epochs, args.jit, tutorial=i == len(sizes) - 1,
                           rounds=args.rounds)
            for name, value in runs.items():
                results.append({"batch_size": batch_size, "run": name, "rows_per_second": round(value)})
                print(f"batch {batch_size:4d}  {name:60s} {value:8.0f} rows/s", flush=True)
    record = {"date": date.today().isoformat(), "machine": {"cores": os.cpu_count(), "cpu": platform.processor(),
                                                            "tensorflow": tf.__version__, "keras": keras.__version__},
              "epochs": args.epochs, "rounds": args.rounds, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
