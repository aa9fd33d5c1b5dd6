"""`make bench`: every speed and memory figure of the README, side by side in one run.

    python benchmarks/bench.py [--quick] [--out bench/results]

Writes ``bench/results/<date>.json`` and ``bench/results/<date>.md`` (the table the README shows):

(a) inference peers producing the embedding and the reconstruction error of the same rows: Keras
    ``predict``, Keras under an XLA-compiled function, bare onnxruntime ``run`` on in-memory arrays,
    and ``seqae embed`` end to end (Parquet in and out), on the ECG shape (140 steps x 1 feature, 64
    units) and a multivariate one (100 x 8, 128 units); sequences per second and each ratio to embed;
(b) the roofline fraction: LSTM FLOPs per sequence x sequences per second of the bare scorer, over
    this machine's float32 GEMM rate (a large square matmul);
(c) the pipeline's capacity with a null scorer, 1 and 2 workers;
(d) peak RSS and wall time of ``seqae embed`` on N and 4N rows, each in its own process;
(e) training rows per second from Parquet against the same model on in-memory arrays.

Models are trained for one epoch (their weights do not change the speed); every figure is a median
of repeated runs after a warm-up. ``--quick`` is the CI guard: (a) on the ECG shape, (b) and (c), at
a small size, and it exits 1 only on a gross regression (embed end to end slower than Keras
``predict``, or the pipeline's capacity with a null scorer below the scorer's own rate).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
from common import SHARDS, ecg_rows, interleaved_rates, median_rate, write_shards

# Peak RSS from VmHWM (this process image only): ru_maxrss survives exec on Linux and would report the
# parent's peak (a benchmark process with TensorFlow loaded) instead.
RSS_CASE = """
import json, sys, time
from seqae.config import EmbedConfig
from seqae.infer import embed
model, data, out = sys.argv[1:4]
start = time.perf_counter()
report = embed(model, data, out, EmbedConfig(device="cpu"))
seconds = time.perf_counter() - start
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": round(seconds, 2), "rows": report.totals["rows_written"], "peak_rss_mib": round(hwm / 1024)}))
"""


def multivariate_rows(rows: int, steps: int = 100, features: int = 8, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :, None] + rng.uniform(0, 20, size=(rows, 1, 1))
    values = np.sin(t * np.linspace(0.1, 0.9, features)).astype(np.float32)
    values += rng.normal(0, 0.05, values.shape).astype(np.float32)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), features)
    return pa.table({"id": np.arange(rows, dtype=np.int64),
                     "values": pa.FixedSizeListArray.from_arrays(inner, steps)})


def make_model(data: Path, where: Path, units: int) -> Path:
    from seqae.config import ModelConfig, TrainConfig
    from seqae.export import export
    from seqae.train import train

    train(str(data), where, model_config=ModelConfig(units=units), train_config=TrainConfig(max_epochs=1))
    export(where)
    return where


def lstm_flops(cfg) -> float:
    """Multiply-adds x 2 of the scorer's LSTMs and projections per sequence of ``steps`` steps."""
    f, u, latent = cfg["num_features"], cfg["units"], cfg["latent_dim"] or cfg["units"]
    decoder_in = {"unconditioned": latent, "state": 1, "conditioned": f}[cfg["decoder"]]
    per_step = 4 * u * (f + u) + 4 * u * (decoder_in + u) + u * f  # encoder, decoder, projection
    return 2.0 * per_step


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """float32 FLOP/s of a large square matmul (numpy's BLAS, all cores this process may use)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    return median_rate(lambda: a @ b, 2 * n ** 3, repeats)


def inference_peers(model_dir: Path, data: Path, values: np.ndarray, repeats: int) -> dict[str, float]:
    import tensorflow as tf

    from seqae.infer import EmbedConfig, SessionOptions, embed
    from seqae.infer.session import ScorerSession
    from seqae.model import load_model

    rows = len(values)
    lengths = np.full(rows, values.shape[1], np.int32)
    run = {"n": 0}

    def embed_job():
        run["n"] += 1
        embed(model_dir, str(data), data.parent / f"out-{data.name}-{run['n']}", EmbedConfig(device="cpu"))

    session = ScorerSession(model_dir, SessionOptions(device="cpu"), outputs=["embedding", "recon_error"])

    def ort_alone(batch=128):
        for s in range(0, rows, batch):
            session.run(values[s:s + batch], lengths[s:s + batch])

    model = load_model(model_dir).model
    inputs = {"values": values, "lengths": lengths}
    xla = tf.function(lambda v, n: model({"values": v, "lengths": n}, training=False), jit_compile=True)

    def keras_xla(batch=1024):
        for s in range(0, rows, batch):
            xla(values[s:s + batch], lengths[s:s + batch])

    return interleaved_rates({
        "seqae embed end to end": embed_job,
        "onnxruntime run, in memory": ort_alone,
        "Keras predict, in memory": lambda: model.predict(inputs, batch_size=1024, verbose=0),
        "Keras XLA-compiled, in memory": keras_xla,
    }, rows, repeats)


def pipeline_capacity(model_dir: Path, data: Path, rows: int, repeats: int) -> dict[str, float]:
    from seqae.infer import EmbedConfig, embed

    out = {}
    for workers in (1, 2):
        run = {"n": 0}

        def null_embed(workers=workers):
            run["n"] += 1
            embed(model_dir, str(data), data.parent / f"null-{workers}-{run['n']}",
                  EmbedConfig(device="cpu", workers=workers), null_scorer=True)

        out[f"{workers} worker(s)"] = median_rate(null_embed, rows, repeats)
    return out


def rss_and_time(model_dir: Path, folders: dict[str, Path]) -> dict[str, dict]:
    out = {}
    for name, data in folders.items():
        run = subprocess.run([sys.executable, "-c", RSS_CASE, str(model_dir), str(data), str(data.parent / f"rss-{name}")],
                             capture_output=True, text=True, check=True)
        out[name] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def training(data: Path, epochs: int) -> dict[str, float]:
    """At the default batch size, the way `seqae train` and `make demo` fit."""
    from train_throughput import measure

    from seqae.config import TrainConfig

    return measure(str(data), TrainConfig().batch_size, epochs)


def markdown(record: dict) -> str:
    m = record["machine"]
    lines = [f"# seqae benchmarks, {record['date']}", "",
             f"{m['cpu']}, {m['cores']} cores; onnxruntime {m['onnxruntime']}, tensorflow {m['tensorflow']}; "
             f"medians of {record['repeats']} runs after a warm-up.", ""]
    lines += ["| shape | path | seq/s | embed / path |", "|---|---|---:|---:|"]
    for shape, peers in record["inference"].items():
        embed_rate = peers["seqae embed end to end"]
        lines += [f"| {shape} | {name} | {rate:,.0f} | {embed_rate / rate:.2f}x |" for name, rate in peers.items()]
    lines += ["", "| shape | LSTM GFLOP/s (bare scorer) | machine float32 GEMM GFLOP/s | fraction |", "|---|---:|---:|---:|"]
    for shape, r in record["roofline"].items():
        lines.append(f"| {shape} | {r['lstm_gflops']:.1f} | {r['gemm_gflops']:.1f} | {r['fraction']:.2f} |")
    lines += ["", "| null-scorer pipeline (ECG shape) | rows/s |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in record["pipeline_capacity"].items()]
    if "memory" not in record:
        return "\n".join(lines) + "\n"
    lines += ["", "| seqae embed (ECG shape, own process) | rows | seconds | rows/s | peak RSS MiB |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['rows']:,} | {v['seconds']} | {v['rows'] / v['seconds']:,.0f} | {v['peak_rss_mib']} |"
              for k, v in record["memory"].items()]
    r = record["memory_ratio"]
    lines += ["", f"4N/N: peak RSS {r['rss']:.2f}x, wall time {r['time']:.2f}x (linear: 4x).", ""]
    lines += [f"| training (ECG normal beats, batch {record.get('training_batch_size', 32)}) | rows/s |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in record["training"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI guard: small sizes, gross regressions fail")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    quick = args.quick
    repeats = 2 if quick else 3
    rows = {"ecg": 4000 if quick else 20_000, "multivariate": 2000 if quick else 10_000}
    big = 20_000 if quick else 200_000

    import keras
    import onnxruntime
    import tensorflow as tf

    from seqae.infer.runtime import physical_cores

    tmp = Path(tempfile.mkdtemp(prefix="seqae-bench-"))
    ecg = ecg_rows(max(rows["ecg"], big))
    multi = multivariate_rows(rows["multivariate"])
    shapes = {"ECG 140x1, 64 units": (ecg.slice(0, rows["ecg"]), 64, "ecg")}
    if not quick:
        shapes["multivariate 100x8, 128 units"] = (multi, 128, "multi")
    record: dict = {"date": date.today().isoformat(), "quick": quick, "repeats": repeats, "machine": {
        "cpu": platform.processor() or platform.machine(), "cores": physical_cores(), "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "inference": {}, "roofline": {}}
    started = time.time()
    gemm = gemm_rate()
    models = {}
    for shape, (table, units, name) in shapes.items():
        data = write_shards(table, tmp / name)
        models[name] = make_model(data, tmp / f"model-{name}", units)
        flat = table.column("values").combine_chunks()
        while pa.types.is_list(flat.type) or pa.types.is_fixed_size_list(flat.type):
            flat = flat.flatten()
        values = flat.to_numpy().astype(np.float32).reshape(table.num_rows, -1, 1 if name == "ecg" else 8)
        peers = inference_peers(models[name], data, values, repeats)
        record["inference"][shape] = peers
        cfg = json.loads((models[name] / "seqae.json").read_text())["model"]
        lstm = lstm_flops(cfg) * values.shape[1] * peers["onnxruntime run, in memory"]
        record["roofline"][shape] = {"flops_per_sequence": lstm_flops(cfg) * values.shape[1], "lstm_gflops": lstm / 1e9,
                                     "gemm_gflops": gemm / 1e9, "fraction": lstm / gemm}
        print(shape, {k: round(v) for k, v in peers.items()}, flush=True)
    capacity_data = write_shards(ecg.slice(0, big), tmp / "capacity")
    record["pipeline_capacity"] = pipeline_capacity(models["ecg"], capacity_data, big, repeats)
    print("capacity", record["pipeline_capacity"], flush=True)
    if not quick:  # the guard needs (a) and (c) only
        # 4N rows as 4x the shards of the same size: what grows is the data set, not the unit pyarrow
        # reads (one row group's column chunk per worker, here 25 k rows x 140 floats).
        four = write_shards(pa.concat_tables([ecg.slice(0, big)] * 4), tmp / "four", shards=4 * SHARDS)
        record["memory"] = rss_and_time(models["ecg"], {"N": capacity_data, "4N": four})
        n, n4 = record["memory"]["N"], record["memory"]["4N"]
        record["memory_ratio"] = {"rss": n4["peak_rss_mib"] / n["peak_rss_mib"], "time": n4["seconds"] / n["seconds"]}
        print("memory", record["memory"], flush=True)
        from seqae.datasets import write_dataset

        write_dataset("ecg5000", tmp / "train", shards=4)
        from seqae.config import TrainConfig

        record["training_batch_size"] = TrainConfig().batch_size
        record["training"] = training(tmp / "train", epochs=4)
    record["seconds"] = round(time.time() - started)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{record['date']}{'-quick' if quick else ''}"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(record))
    print(markdown(record))
    problems = []
    ecg_peers = record["inference"]["ECG 140x1, 64 units"]
    if ecg_peers["seqae embed end to end"] < ecg_peers["Keras predict, in memory"]:
        problems.append("seqae embed end to end is slower than Keras predict")
    if record["pipeline_capacity"]["1 worker(s)"] < ecg_peers["onnxruntime run, in memory"]:
        problems.append("the pipeline with a null scorer is slower than the scorer alone")
    if problems:
        print("REGRESSION: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
