"""The embed pipeline's own capacity: read, validate, decode, assemble and write, with the scorer
replaced by a null one (zeros of the right shapes), beside pyarrow's bare decode of the same files.

    python benchmarks/pipeline_capacity.py [MODEL_DIR] [--rows 200000] [--repeats 3] [--workers 1,2]

MODEL_DIR: an exported model (its schema and identity are used, not its weights); without one a
tiny model is trained and exported first (needs the `train` extra). Data: ECG5000 repeated to
``--rows`` rows in 8 shards (equal lengths, 140 x 1), and the same rows cut to random lengths
(40..140, the padding path). Figures are medians of ``--repeats`` runs, rows per second.
"""

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import ecg_rows, median_rate, write_shards


def tiny_model(data: Path, where: Path) -> Path:
    from seqae.config import ModelConfig, TrainConfig
    from seqae.export import export
    from seqae.train import train

    train(str(data), where, model_config=ModelConfig(units=4), train_config=TrainConfig(max_epochs=1))
    export(where)
    return where


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()

    from seqae.config import DataConfig, EmbedConfig
    from seqae.data import ShardReader, resolve_shards
    from seqae.infer import embed
    from seqae.infer.runtime import physical_cores

    tmp = Path(tempfile.mkdtemp(prefix="seqae-capacity-"))
    big = ecg_rows(args.rows)
    rng = np.random.default_rng(0)
    cut = rng.integers(40, 141, size=args.rows)
    flat = big.column("values").combine_chunks()
    offsets = np.arange(args.rows + 1, dtype=np.int64) * 140
    starts = offsets[:-1]
    take = np.concatenate([np.arange(s, s + c) for s, c in zip(starts, cut)])
    mixed_values = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(cut)].astype(np.int32)),
                                            flat.values.take(pa.array(take)))
    mixed = big.set_column(2, "values", mixed_values)
    write_shards(big, tmp / "equal")
    write_shards(mixed, tmp / "mixed")
    model_dir = args.model_dir or tiny_model(tmp / "equal", tmp / "model")

    results: dict[str, float] = {}
    for kind in ("equal", "mixed"):
        shards = resolve_shards(str(tmp / kind))

        def pyarrow_decode():
            for shard in shards:
                for batch in pq.ParquetFile(shard.path).iter_batches(batch_size=16384, columns=["id", "values"]):
                    batch.column("values").values.to_numpy()

        def seqae_reader():
            for shard in shards:
                for _ in ShardReader(shard, DataConfig(), batch_size=16384):
                    pass

        results[f"{kind}: pyarrow iter_batches + to_numpy (1 thread)"] = median_rate(pyarrow_decode, args.rows,
                                                                                     args.repeats)
        results[f"{kind}: seqae ShardReader, validated and padded (1 thread)"] = median_rate(seqae_reader, args.rows,
                                                                                           args.repeats)
        for workers in map(int, args.workers.split(",")):
            run = {"n": 0}

            def null_embed(workers=workers, kind=kind):
                run["n"] += 1
                embed(model_dir, str(tmp / kind), tmp / f"out-{kind}-{workers}-{run['n']}",
                      EmbedConfig(device="cpu", workers=workers), null_scorer=True)

            results[f"{kind}: embed with a null scorer, {workers} worker(s)"] = median_rate(null_embed, args.rows,
                                                                                            args.repeats)
    width = max(map(len, results))
    print(f"{platform.processor() or platform.machine()}, {physical_cores()} cores; {args.rows} rows, "
          f"median of {args.repeats}")
    print(f"{'path':<{width}}  {'rows/s':>10}")
    for name, rate in results.items():
        print(f"{name:<{width}}  {rate:>10,.0f}")
    print(json.dumps({"rows": args.rows, "repeats": args.repeats, "cores": physical_cores(),
                      "rows_per_s": {k: round(v) for k, v in results.items()}}))


if __name__ == "__main__":
    main()
