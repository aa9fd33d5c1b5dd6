"""Peak memory of `seqae embed` when one very long row hides among normal ones.

    python benchmarks/memory_outlier.py MODEL_DIR [--rows 5000] [--outlier 100000]

Each case runs in its own process and reports its peak RSS: the rows alone; the rows plus one row
of ``--outlier`` steps with the model's recorded max_length (the row is rejected as too_long before
any padding); and the same without a limit (the whole read batch padded to the outlier, as before).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from common import ecg_rows

CASE = """
import dataclasses, json, sys
from seqae.config import EmbedConfig
from seqae.infer import embed
from seqae.modeldir import ModelInfo
model, data, out, limit = sys.argv[1:5]
info = ModelInfo.read(model)
data_config = dataclasses.replace(info.data, max_length=None if limit == "none" else int(limit))
report = embed(model, data, out, EmbedConfig(device="cpu"), data_config=data_config)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mib": round(hwm / 1024),  # VmHWM: ru_maxrss survives exec (the parent's peak)
                  **{k: report.totals[k] for k in ("rows_in", "rows_written", "rows_rejected")}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--outlier", type=int, default=100_000)
    args = parser.parse_args()

    from seqae.modeldir import ModelInfo

    limit = ModelInfo.read(args.model_dir).data.max_length or 280  # models before the limit: 2 x 140
    tmp = Path(tempfile.mkdtemp(prefix="seqae-memory-"))
    table = ecg_rows(args.rows)
    (tmp / "plain").mkdir()
    (tmp / "outlier").mkdir()
    pq.write_table(table, tmp / "plain" / "part-0.parquet")
    long_row = pa.table({"id": pa.array([args.rows], pa.int64()), "label": pa.array([1], pa.int32()),
                         "values": pa.array([[0.5] * args.outlier], pa.list_(pa.float32()))}).cast(table.schema)
    pq.write_table(pa.concat_tables([table.slice(0, args.rows // 2), long_row, table.slice(args.rows // 2)]),
                   tmp / "outlier" / "part-0.parquet")
    cases = {"rows alone": ("plain", str(limit)), f"plus one {args.outlier}-step row, max_length {limit}":
             ("outlier", str(limit)), f"plus one {args.outlier}-step row, no limit": ("outlier", "none")}
    results = {}
    for i, (name, (data, case_limit)) in enumerate(cases.items()):
        run = subprocess.run([sys.executable, "-c", CASE, args.model_dir, str(tmp / data), str(tmp / f"out{i}"),
                              case_limit], capture_output=True, text=True, check=True)
        results[name] = json.loads(run.stdout.strip().splitlines()[-1])
        print(f"{name:<45} {results[name]}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
