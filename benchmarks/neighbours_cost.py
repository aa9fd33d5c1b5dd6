"""What the long layout's bank of training windows (``neighbours.onnx``) costs an embed job, on the CPU.

    python benchmarks/neighbours_cost.py [--repeats 3] [--out bench/results]

Two long-layout data sets, one feature, window 140, stride 10 (``make quality``'s long ECG shape):

- ``long ECG``: ``make quality``'s long ECG set (3 series of 60 normal ECG5000 beats to train on,
  100 beats each to score): a bank of 24,783 windows, 4,161 windows scored;
- ``full bank``: one noisy sine of 115,000 steps to train on (a bank of 114,861 windows, near the
  256 MiB cap) and 3 series of 14,000 steps to score (4,161 windows).

For each, one small model (64 units, 2 epochs: the speed does not depend on how well it is trained)
is exported twice, with its bank and with ``--no-neighbours``, and ``seqae embed --step-scores
--device cpu`` runs over the test data with each, interleaved, ``--repeats`` times. Medians side by
side, their ratio, windows per second; export's time for the bank. Results in
``<out>/neighbours-cost-<date>.json``.
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

WINDOW, STRIDE = 140, 10


def sine_set(folder: Path) -> None:
    rng = np.random.default_rng(0)

    def write(path: Path, series: dict[str, int]) -> None:
        path.mkdir(parents=True)
        keys, times, values = [], [], []
        for key, steps in series.items():
            t = np.arange(steps)
            keys += [key] * steps
            times.append(t)
            values.append(np.sin(2 * np.pi * t / 97 + rng.uniform(0, 6)) + rng.normal(0, 0.1, steps))
        pq.write_table(pa.table({"series": keys, "time": np.concatenate(times),
                                 "value": np.concatenate(values).astype(np.float32),
                                 "is_anomaly": np.zeros(sum(series.values()), np.int8)}), path / "part.parquet")

    write(folder / "train", {"a": 115_000})
    write(folder / "test", {"x": 14_000, "y": 14_000, "z": 14_000})


def models(data: Path, work: Path) -> dict[str, Path]:
    from seqae.config import DataConfig, ExportConfig, ModelConfig, TrainConfig
    from seqae.export import export
    from seqae.train import train

    config = DataConfig(layout="long", key_column="series", time_column="time", feature_columns=("value",),
                        window=WINDOW, stride=STRIDE)
    base = work / "model"
    train(str(data / "train"), base, model_config=ModelConfig(), data_config=config,
          train_config=TrainConfig(max_epochs=2))
    plain = work / "plain"
    shutil.copytree(base, plain)
    started = time.perf_counter()
    record = export(base).record["neighbours"]
    export(plain, ExportConfig(neighbours=False))
    return {"with the bank": base, "without": plain, "export": {
        "bank_windows": record["bank_windows"], "bank_stride": record["bank_stride"], "bytes": record["bytes"],
        "bank_seconds": record["seconds"], "export_seconds": round(time.perf_counter() - started, 1)}}


def embed_once(model: Path, data: Path, out: Path) -> tuple[float, int]:
    from seqae.config import EmbedConfig
    from seqae.infer import embed

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    report = embed(model, str(data / "test"), out, EmbedConfig(device="cpu", step_scores=True))
    return time.perf_counter() - started, sum(s.rows_written for s in report.shards)


def main() -> None:
    import quality

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="seqae-neighbours-") as tmp:
        work = Path(tmp)
        for case in ("long ECG", "full bank"):
            data = work / case.replace(" ", "-")
            if case == "long ECG":
                quality.long_ecg_set(data, quality.LongEcgShape())
            else:
                sine_set(data)
            made = models(data, work / f"{data.name}-models")
            times: dict[str, list[float]] = {"with the bank": [], "without": []}
            windows = 0
            for _ in range(args.repeats):
                for variant in times:
                    seconds, windows = embed_once(made[variant], data, work / "out")
                    times[variant].append(seconds)
            medians = {k: statistics.median(v) for k, v in times.items()}
            results[case] = {"export": made["export"], "windows_scored": windows, "seconds": times,
                             "median_seconds": {k: round(v, 3) for k, v in medians.items()},
                             "windows_per_second": {k: round(windows / v) for k, v in medians.items()},
                             "ratio_with_over_without": round(medians["with the bank"] / medians["without"], 2)}
            print(case, json.dumps(results[case]), flush=True)
    from seqae.infer.runtime import physical_cores

    record = {"date": date.today().isoformat(), "cores": physical_cores(), "repeats": args.repeats,
              "what": __doc__.split("\n\n")[1:3], "cases": results}
    out = Path(args.out) / f"neighbours-cost-{record['date']}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
