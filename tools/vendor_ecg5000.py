"""Rebuild seqae/datasets/ecg5000.parquet from the UCR archive's two TSV files.

    python tools/vendor_ecg5000.py ../shared/data/ucr

Rows 0..499 come from ECG5000_TRAIN, 500..4999 from ECG5000_TEST, in file order.
"""

import gzip
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main(src: str) -> None:
    parts = []
    for name in ("ECG5000_TRAIN.tsv.gz", "ECG5000_TEST.tsv.gz"):
        with gzip.open(Path(src) / name, "rt") as fh:
            parts.append(np.loadtxt(fh, delimiter="\t", dtype=np.float64))
    data = np.concatenate(parts)
    labels = data[:, 0].astype(np.int32)
    values = data[:, 1:].astype(np.float32)
    n, t = values.shape
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.int64)),
        "label": pa.array(labels),
        "values": pa.ListArray.from_arrays(pa.array(np.arange(0, n * t + 1, t, dtype=np.int32)), pa.array(values.ravel())),
    })
    out = Path(__file__).resolve().parents[1] / "seqae" / "datasets" / "ecg5000.parquet"
    pq.write_table(table, out, compression="zstd", compression_level=19, use_dictionary=False,
                   use_byte_stream_split=["values.list.element"])
    print(f"{out}: {n} rows x {t} steps, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/ucr")
