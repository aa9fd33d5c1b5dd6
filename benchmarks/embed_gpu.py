"""The GPU check for a lent H200 (no TensorFlow there): run it on the device machine.

    python benchmarks/embed_gpu.py MODEL_DIR [--rows 2000000] [--shards 32]

MODEL_DIR: exported here with `seqae export --fp16` and carried over. Writes ECG-shaped random rows
as Parquet, then in one run: the scorer alone with IO binding (fp32, fp16), `seqae embed` end to end
(fp32, fp16) and their ratio (target: at least 0.85), the fp16 parity figure, the CUDA-CPU agreement
and the node placement check. Prints one JSON line; also writes it to $OUT/gpu.json when OUT is set.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from seqae.infer import EmbedConfig, ScorerSession, SessionOptions, embed
    from seqae.infer.runtime import preload_cuda
    from seqae.modeldir import ModelInfo

    preload_cuda()
    info = ModelInfo.read(args.model_dir)
    meta = info.metadata
    features = info.model.num_features
    steps = meta["training"]["longest"]
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="seqae-gpu-"))
    data = tmp / "data"
    data.mkdir()
    per = args.rows // args.shards
    block = rng.standard_normal((per, steps * features), dtype=np.float32)
    offsets = pa.array(np.arange(0, per * steps + 1, steps, dtype=np.int32))
    for i in range(args.shards):
        flat = pa.array(block.reshape(-1))
        inner = pa.FixedSizeListArray.from_arrays(flat, features) if features > 1 else flat
        pq.write_table(pa.table({"id": np.arange(i * per, (i + 1) * per, dtype=np.int64),
                                 "values": pa.ListArray.from_arrays(offsets, inner)}), data / f"part-{i:03d}.parquet")
    rows = per * args.shards
    values = block.reshape(per, steps, features)
    lengths = np.full(per, steps, np.int32)
    result = {"rows": rows, "shape": [steps, features, meta["model"]["units"]]}
    for precision in ("fp32", "fp16"):
        fp16 = precision == "fp16"
        session = ScorerSession(args.model_dir, SessionOptions(device="cuda", fp16=fp16),
                                outputs=["embedding", "recon_error"])
        batch = 16384
        session.run(values[:batch], lengths[:batch])
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for s in range(0, per, batch):
                session.run(values[s:s + batch], lengths[s:s + batch])
            times.append((time.perf_counter() - start) / per)
        alone = 1 / statistics.median(times)
        runs = []
        for r in range(args.repeats):
            report = embed(args.model_dir, str(data), tmp / f"out-{precision}-{r}", EmbedConfig(device="cuda", fp16=fp16))
            runs.append(report.seconds)
        end_to_end = rows / statistics.median(runs)
        result[precision] = {"scorer_alone_seq_s": round(alone), "embed_seq_s": round(end_to_end),
                             "embed_over_alone": round(end_to_end / alone, 3)}
        if fp16:
            result[precision]["parity"] = report.fp16_parity
    cpu = ScorerSession(args.model_dir, SessionOptions(device="cpu"), outputs=["embedding", "recon_error"])
    gpu = ScorerSession(args.model_dir, SessionOptions(device="cuda"), outputs=["embedding", "recon_error"])
    a, b = cpu.run(values[:512], lengths[:512]), gpu.run(values[:512], lengths[:512])
    result["cuda_vs_cpu_max_abs"] = {k: float(np.abs(a[k] - b[k]).max()) for k in a}
    line = json.dumps(result)
    print(line)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu.json").write_text(line)


if __name__ == "__main__":
    main()
