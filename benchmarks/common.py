"""What the benchmark scripts share: the timing rule and the ECG rows they run on."""

import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHARDS = 8


def median_rate(fn, rows: int, repeats: int) -> float:
    """Rows per second of ``fn()``: one warm-up run (tracing, compilation, sessions, page cache),
    then the median of ``repeats`` timed runs."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return rows / statistics.median(times)


def interleaved_rates(fns: dict, rows: int, repeats: int) -> dict[str, float]:
    """Rows per second of each ``fns[name]()``, side by side: one warm-up of each, then ``repeats``
    rounds that run every one once (the order rotating each round), so that a change of load on a
    shared machine falls on all of them; the median per name."""
    for fn in fns.values():
        fn()
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: rows / statistics.median(t) for name, t in times.items()}


def ecg_rows(rows: int) -> pa.Table:
    """The bundled ECG5000 repeated to ``rows`` rows, ids renumbered 0..rows-1."""
    from seqae.datasets import load_dataset

    table = load_dataset("ecg5000")
    big = pa.concat_tables([table] * -(-rows // table.num_rows)).slice(0, rows)
    return big.set_column(0, "id", pa.array(np.arange(rows, dtype=np.int64)))


def write_shards(table: pa.Table, folder: Path, shards: int = SHARDS) -> Path:
    """``table`` split in order into ``shards`` zstd Parquet files ``part-<i>.parquet`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    n = table.num_rows // shards
    for i in range(shards):
        part = table.slice(i * n, n if i < shards - 1 else table.num_rows - i * n)
        pq.write_table(part, folder / f"part-{i}.parquet", compression="zstd")
    return folder
