"""Writing the embed job's outputs to Parquet: seqae's column options beside pyarrow's defaults.

    python benchmarks/write_outputs.py [--dims 64,128] [--rows 16384] [--batches 8] [--repeats 7]

Each figure: ``--batches`` tables of ``--rows`` rows written through one ``pq.ParquetWriter`` (zstd,
to memory) with the output schema of a scored model (key, ``embedding`` of tanh-ranged random floats,
``recon_error``, ``length``, ``score``, ``is_anomaly``), one warm-up then the median of ``--repeats``; rows/s and bytes per row.
"""

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import median_rate

from seqae.io import column_options, embedding_schema, embedding_table


def outputs_table(rows: int, dim: int) -> pa.Table:
    rng = np.random.default_rng(0)
    schema = embedding_schema(pa.schema([pa.field("id", pa.int64())]), pa.schema([]), dim, predicts=False,
                              step_errors=False, scored=True)
    outputs = {"embedding": np.tanh(rng.standard_normal((rows, dim), dtype=np.float32)),
               "recon_error": rng.random(rows, dtype=np.float32), "score": rng.random(rows, dtype=np.float32),
               "is_anomaly": rng.random(rows) < 0.01}
    return embedding_table(schema, pa.table({"id": np.arange(rows, dtype=np.int64)}), pa.table({}), outputs,
                           np.full(rows, 140))


def rate(table: pa.Table, batches: int, repeats: int, **options) -> tuple[float, float]:
    """Rows per second (``common.median_rate``) and bytes per row of writing ``batches`` x ``table``."""
    size = {}

    def write():
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, table.schema, compression="zstd", **options) as writer:
            for _ in range(batches):
                writer.write_table(table, row_group_size=65536)
        size["bytes"] = sink.getvalue().size

    rows = batches * table.num_rows
    return median_rate(write, rows, repeats), size["bytes"] / rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dims", default="64,128")
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'embedding':>9}  {'writer':<28}{'rows/s':>12}{'bytes/row':>11}")
    for dim in map(int, args.dims.split(",")):
        table = outputs_table(args.rows, dim)
        base, base_size = rate(table, args.batches, args.repeats)
        ours, our_size = rate(table, args.batches, args.repeats, **column_options(table.schema))
        print(f"{dim:>9}  {'pyarrow defaults':<28}{base:>12,.0f}{base_size:>11.1f}")
        print(f"{dim:>9}  {'seqae column_options':<28}{ours:>12,.0f}{our_size:>11.1f}  ({ours / base:.2f}x)")


if __name__ == "__main__":
    main()
