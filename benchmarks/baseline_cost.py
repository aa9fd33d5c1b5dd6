"""What the nearest-training-window baseline (``seqae.baseline``) costs: build memory and distance time.

    python benchmarks/baseline_cost.py [--ref COMMIT] [--repeats 5] [--out bench/results]

Two shapes of training data, one long series each (a sine per feature, float32 Parquet): 40,000
steps x 38 features with windows of 100 steps, and 400,000 steps x 1 feature with windows of 140.
For each, ``NearestWindows.build`` runs in a process of its own and reports its peak RSS (VmHWM) and
the bank it kept. Then ``distances`` on a bank of 100,000 random windows of 140 steps: 256 full
windows, and 200 full plus 56 shorter ones of distinct lengths (a series' trailing windows), in
seconds.

``--ref COMMIT``: the same cases with ``seqae/baseline.py`` as it was at COMMIT (imported from a
copy), interleaved with the current one case by case, ``--repeats`` times each; medians side by
side, and their ratio. Results in ``<out>/baseline-cost-<date>.json``.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"40000x38 window 100": (40_000, 38, 100), "400000x1 window 140": (400_000, 1, 140)}

BUILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from baseline_under_test import NearestWindows
from seqae.data import DataConfig
data, features, window = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = DataConfig(layout="long", key_column="s", time_column="t", window=window, stride=window,
                    feature_columns=tuple(f"f{i}" for i in range(features)))
bank = NearestWindows.build(data, config, features, {"mean": [0.0] * features, "std": [1.0] * features})
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mib": round(hwm / 1024), "bank_windows": len(bank.bank), "bank_mib":
                  round(bank.bank.nbytes / 2 ** 20), "stride": bank.stride}))
"""

DISTANCES = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from baseline_under_test import NearestWindows
window = 140
rng = np.random.default_rng(0)
windows = rng.normal(size=(100_000, window))
near = NearestWindows(windows, window, 1, np.zeros(1), np.ones(1), 1, len(windows), "random")
values = rng.normal(size=(256, window, 1)).astype(np.float32)
out = {}
for name, lengths in (("256 full", np.full(256, window)),
                      ("200 full + 56 shorter", np.r_[np.full(200, window), window - 1 - np.arange(56)])):
    started = time.perf_counter()
    near.distances(values, lengths)
    out[name] = time.perf_counter() - started
print(json.dumps(out))
"""


def write_data(folder: Path, steps: int, features: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(steps)
    columns = {"s": pa.array(["a"] * steps), "t": t}
    columns |= {f"f{i}": np.sin(t / 7 + i).astype(np.float32) for i in range(features)}
    pq.write_table(pa.table(columns), folder / "part.parquet")
    return str(folder)


def version(folder: Path, commit: str | None) -> str:
    """A folder holding ``baseline_under_test.py``: seqae/baseline.py now or at ``commit``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = (subprocess.run(["git", "show", f"{commit}:seqae/baseline.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout if commit
              else (ROOT / "seqae" / "baseline.py").read_text())
    (folder / "baseline_under_test.py").write_text(source)
    return str(folder)


def run(script: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *args], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="a commit to set beside the current seqae/baseline.py")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seqae-baseline-cost-"))
    versions = {"current": version(work / "current", None)}
    if args.ref:
        versions[args.ref] = version(work / "ref", args.ref)
    data = {name: write_data(work / name.split()[0], steps, features) for name, (steps, features, _) in SHAPES.items()}
    runs: dict = {v: {"build": {n: [] for n in SHAPES}, "distances": []} for v in versions}
    for _ in range(args.repeats):  # interleaved: each repeat runs every version once, case by case
        for name, (_, features, window) in SHAPES.items():
            for v, folder in versions.items():
                runs[v]["build"][name].append(run(BUILD, folder, data[name], str(features), str(window)))
        for v, folder in versions.items():
            runs[v]["distances"].append(run(DISTANCES, folder))
    result: dict = {"repeats": args.repeats, "versions": {}}
    for v, r in runs.items():
        result["versions"][v] = {
            "build": {n: {**rs[-1], "peak_rss_mib": statistics.median(x["peak_rss_mib"] for x in rs)}
                      for n, rs in r["build"].items()},
            "distances_seconds": {k: round(statistics.median(x[k] for x in r["distances"]), 3)
                                  for k in r["distances"][0]}}
    if args.ref:
        now, ref = result["versions"]["current"], result["versions"][args.ref]
        result["ratio_current_to_ref"] = {
            "build_peak_rss": {n: round(now["build"][n]["peak_rss_mib"] / ref["build"][n]["peak_rss_mib"], 2)
                               for n in SHAPES},
            "distances_seconds": {k: round(now["distances_seconds"][k] / ref["distances_seconds"][k], 2)
                                  for k in now["distances_seconds"]}}
    out = Path(args.out) / f"baseline-cost-{date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
