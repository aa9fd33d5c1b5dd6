"""The embed flow on Ray against the same flow on local threads, on this machine.

    python benchmarks/ray_scaleout.py MODEL_DIR [--rows 50000] [--shards 8] [--repeats 3] [--num-cpus N]
        [--out bench/results/ray-scaleout-DATE.json]

MODEL_DIR: an exported model (its architecture sets the scorer's cost; how well it was trained does
not). Data: ECG5000 repeated to ``--rows`` rows in ``--shards`` shards. Each configuration runs the
``seqae-embed`` flow under a temporary Prefect server into a fresh output folder, ``--repeats`` times;
the figures are medians of the flow's wall time:

    threads       the default: shard tasks on threads in the flow's process, one shared session
    ray (cold)    ray_address="local": the flow starts a Ray runtime (``--num-cpus``) and stops it
    ray (warm)    a Ray runtime already up in this process (as a long-lived cluster would be): the
                  flow's RayTaskRunner reuses it, so start-up is not counted

The machine's load average is recorded beside the figures: other work on the cores skews them.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from common import ecg_rows

# flows/ is wiring beside the package, not installed: import it from the repository (Ray workers
# inherit this path).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=None, help="write the JSON result here as well")
    args = parser.parse_args()

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["SEQAE_RAY_NUM_CPUS"] = str(args.num_cpus)
    from prefect.testing.utilities import prefect_test_harness

    from flows.definitions import embed
    from seqae.config import EmbedConfig

    tmp = Path(tempfile.mkdtemp(prefix="seqae-ray-bench-"))
    data = tmp / "data"
    data.mkdir()
    big = ecg_rows(args.rows)
    per = -(-args.rows // args.shards)
    for i in range(args.shards):
        pq.write_table(big.slice(i * per, per), data / f"part-{i:02d}.parquet")
    config = EmbedConfig(device="cpu")
    runs = iter(range(10**6))

    def run(ray_address):
        out = tmp / f"out-{next(runs)}"
        start = time.perf_counter()
        summary = embed(str(data), str(out), model_dir=args.model_dir, config=config, drift=None,
                        ray_address=ray_address, concurrency=args.shards)
        seconds = time.perf_counter() - start
        assert summary["totals"]["rows_written"] == args.rows, summary["totals"]
        return seconds, summary["workers"]

    def measure(ray_address):
        run(ray_address)  # warm-up: page cache, imports, the shared session of this process
        timed = [run(ray_address) for _ in range(args.repeats)]
        seconds = statistics.median(t for t, _ in timed)
        return {"seconds": round(seconds, 2), "rows_per_second": round(args.rows / seconds),
                "runs": [round(t, 2) for t, _ in timed], "workers": timed[-1][1]}

    results = {}
    with prefect_test_harness(server_startup_timeout=120):
        results["threads"] = measure(None)
        results["ray_cold"] = measure("local")
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
        results["ray_start_seconds"] = round(time.perf_counter() - started, 2)
        try:
            results["ray_warm"] = measure("local")
        finally:
            ray.shutdown()
    for name in ("ray_cold", "ray_warm"):
        results[name]["speedup_over_threads"] = round(results["threads"]["seconds"] / results[name]["seconds"], 3)
    report = {"benchmark": "ray_scaleout", "rows": args.rows, "shards": args.shards, "repeats": args.repeats,
              "model_dir": args.model_dir, "ray_num_cpus": args.num_cpus, "cores": len(os.sched_getaffinity(0)),
              "machine": platform.machine(), "python": platform.python_version(),
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()], **results}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
