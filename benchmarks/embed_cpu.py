"""Embed job end to end against every Keras path, on the same model and data, in one run.

    python benchmarks/embed_cpu.py MODEL_DIR [--rows 100000] [--repeats 3]

MODEL_DIR: an exported model (e.g. demo/model after `make demo`). Data: ECG5000 repeated to
``--rows`` rows in 8 shards. Keras paths run on in-memory arrays (no Parquet read or write), so
they are favoured; the embed job includes reading, validating, scoring and writing Parquet.
Figures are medians of ``--repeats`` runs; ratios are against the embed job.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from common import ecg_rows, median_rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from seqae.infer import EmbedConfig, SessionOptions, embed
    from seqae.infer.session import ScorerSession

    big = ecg_rows(args.rows)
    values = np.stack(big.column("values").to_numpy(zero_copy_only=False))[..., None].astype(np.float32)
    lengths = np.full(args.rows, values.shape[1], np.int32)
    tmp = Path(tempfile.mkdtemp(prefix="seqae-bench-")) / "data"
    tmp.mkdir()
    shards = 8
    for i in range(shards):
        n = args.rows // shards
        pq.write_table(big.slice(i * n, n if i < shards - 1 else args.rows - i * n), tmp / f"part-{i}.parquet")

    results = {}
    session = ScorerSession(args.model_dir, SessionOptions(device="cpu"),
                            outputs=["embedding", "recon_error"])
    for batch in (64, 128, 1024):
        def ort_alone(batch=batch):
            for s in range(0, args.rows, batch):
                session.run(values[s:s + batch], lengths[s:s + batch])
        results[f"onnxruntime scorer alone, batch {batch} (in memory)"] = median_rate(ort_alone, args.rows, args.repeats)

    run = {"n": 0}

    def embed_job():
        run["n"] += 1
        embed(args.model_dir, str(tmp), tmp.parent / f"out-{run['n']}", EmbedConfig(device="cpu"))
    results["seqae embed end to end (Parquet in and out)"] = median_rate(embed_job, args.rows, args.repeats)

    import tensorflow as tf

    from seqae.model import load_model

    model = load_model(args.model_dir).model
    inputs = {"values": values, "lengths": lengths}
    results["Keras predict, batch 1024"] = median_rate(
        lambda: model.predict(inputs, batch_size=1024, verbose=0), args.rows, args.repeats)

    xla = tf.function(lambda v, n: model({"values": v, "lengths": n}, training=False), jit_compile=True)
    for batch in (1024, 4096):
        def keras_xla(batch=batch):
            for s in range(0, args.rows, batch):
                out = xla(values[s:s + batch], lengths[s:s + batch])
            return out
        results[f"Keras XLA-compiled, batch {batch} (in memory)"] = median_rate(keras_xla, args.rows, args.repeats)

    reference = results["seqae embed end to end (Parquet in and out)"]
    width = max(map(len, results))
    print(f"{'path':<{width}}  {'seq/s':>10}  embed/path")
    for name, rate in results.items():
        print(f"{name:<{width}}  {rate:>10,.0f}  {reference / rate:>9.2f}x")
    print(json.dumps({"rows": args.rows, "repeats": args.repeats, "seq_per_s": {k: round(v) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
