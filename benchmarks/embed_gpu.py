"""The GPU check for a lent H200 (no TensorFlow there): run it on the device machine.

    python benchmarks/embed_gpu.py MODEL_DIR [MODEL_DIR ...] [--rows 2000000] [--shards 32]
        [--workers 4,8,16] [--null-workers 1,2,4,8,16] [--repeats 3] [--precisions fp32,fp16]
        [--variants ...] [--device cuda]

On the H200 (benchmarks/gpu_run.sh runs it there), the defaults with the demo model and a 100x8x128
one took under 3 minutes before the variants were added (about 1 more).

MODEL_DIR: exported here with `seqae export --fp16` and carried over. ``--rows`` is the row count
for a 140 x 1 model; other shapes get the same number of values (a 100 x 8 model: 350 k rows).
For each model, random rows written as Parquet, then in one run:

- the scorer alone with IO binding (fp32, fp16; batches of 16384 and 65536);
- ``seqae embed`` end to end (fp32, fp16) at each worker count, with the share of the run the scoring
  thread spent in the scorer (``scorer_busy``; summed over the threads with two feeders, so up to 2),
  and the end-to-end rate over the scorer's alone;
- the same at the most workers with read and scorer batches of 65536 rows (the default is 16384);
- fp32 at the most workers with each of ``--variants``: a 0.5 ms GIL switch interval, two threads
  feeding the one session, and both (probes of why the job keeps only part of the scorer's rate);
- the pipeline's capacity with a null scorer at each ``--null-workers`` count;
- the fp16 parity (from the fp16 run's report), CUDA against CPU on the same rows, and the scorer
  alone on the CPU provider (all cores) for scale.

Every figure is the median of ``--repeats`` runs. Writes the JSON to $OUT/gpu.json after every step
(a timeout still returns what was measured) and prints it at the end. ``--device cpu`` is a dry run
for this machine: fp32 only, inference batches of 128 (the 65536 variant then changes only the read
batch), no CUDA-CPU comparison.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import median_rate


def write_data(folder: Path, rows: int, shards: int, steps: int, features: int, seed: int = 0):
    """Random float32 rows of full length as ``list<float32>`` (or ``list<fixed_size_list>``)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    per = rows // shards
    block = rng.standard_normal((per, steps * features), dtype=np.float32)
    offsets = pa.array(np.arange(0, per * steps + 1, steps, dtype=np.int32))
    for i in range(shards):
        flat = pa.array(block.reshape(-1))
        inner = pa.FixedSizeListArray.from_arrays(flat, features) if features > 1 else flat
        pq.write_table(pa.table({"id": np.arange(i * per, (i + 1) * per, dtype=np.int64),
                                 "values": pa.ListArray.from_arrays(offsets, inner)}), folder / f"part-{i:03d}.parquet")
    return per * shards, block.reshape(per, steps, features)


class BusyScorer:
    """Wraps ``seqae.infer.job.score`` (called only by the scoring threads) to sum its time."""

    def __init__(self):
        import seqae.infer.job as job

        self.job, self.inner, self.seconds = job, job.score, 0.0

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        self.job.score = timed
        return self

    def __exit__(self, *exc):
        self.job.score = self.inner


@contextlib.contextmanager
def switch_interval(seconds: float):
    """A shorter GIL switch interval (Python's default is 5 ms): the thread feeding the GPU waits for
    the GIL after each call returns, while 8-16 decoding threads hold it in turn."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@contextlib.contextmanager
def feeders(count: int):
    """``count`` threads take batches from the scoring queue instead of one (one session, run from
    several threads at once: host copies can overlap another call's kernels)."""
    import seqae.infer.job as job

    base = job.ScoringThread

    class Several(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._more = [threading.Thread(target=self._loop, daemon=True) for _ in range(count - 1)]
            for thread in self._more:
                thread.start()

        def close(self):
            super().close()  # sets stop: the other loops leave within their 0.1 s poll
            for thread in self._more:
                thread.join(timeout=30)

    job.ScoringThread = Several
    try:
        yield
    finally:
        job.ScoringThread = base


def combined(*makers) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    for make in makers:
        stack.enter_context(make())
    return stack


VARIANTS = {"switch_interval_0.5ms": lambda: switch_interval(0.0005), "two_feeders": lambda: feeders(2),
            "two_feeders_switch_interval_0.5ms": lambda: combined(lambda: switch_interval(0.0005),
                                                                  lambda: feeders(2))}


def machine() -> dict:
    import onnxruntime as ort

    from seqae.infer.runtime import physical_cores

    info = {"cpu": platform.processor() or platform.machine(), "cores": physical_cores(),
            "os_cpus": os.cpu_count(), "onnxruntime": ort.__version__, "python": platform.python_version()}
    try:
        info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                      "--format=csv,noheader"], capture_output=True, text=True,
                                     timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["gpu"] = f"nvidia-smi: {exc}"
    return info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dirs", nargs="+")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="4,8,16")
    parser.add_argument("--null-workers", default="1,2,4,8,16")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--precisions", default="fp32,fp16", help="on CUDA; the CPU runs fp32 only")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="fp32 at the most workers; '' for none")
    args = parser.parse_args()

    from seqae.infer import EmbedConfig, SessionOptions, embed
    from seqae.infer.runtime import preload_cuda
    from seqae.infer.session import ScorerSession
    from seqae.modeldir import ModelInfo

    cuda = args.device == "cuda"
    if cuda:
        preload_cuda()
    out = Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else None
    result: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "device": args.device,
                    "repeats": args.repeats, "models": {}}

    def save():
        if out:
            out.write_text(json.dumps(result, indent=1))

    def step(record: dict, name: str, fn):
        """Run one measurement; a failure is recorded and the next one runs."""
        start = time.perf_counter()
        try:
            record[name] = fn()
        except Exception as exc:  # noqa: BLE001 - the check reports, it does not stop
            record[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
        print(f"{name}: {time.perf_counter() - start:.1f} s  {json.dumps(record[name])[:300]}", flush=True)
        save()

    precisions = args.precisions.split(",") if cuda else ["fp32"]
    workers = [int(w) for w in args.workers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="seqae-gpu-"))
    for index, model_dir in enumerate(args.model_dirs):
        meta = ModelInfo.read(model_dir).metadata
        steps, features, units = meta["training"]["longest"], meta["model"]["num_features"], meta["model"]["units"]
        rows = args.rows * 140 // (steps * features)
        data = tmp / f"data-{index}"
        start = time.perf_counter()
        rows, values = write_data(data, rows, args.shards, steps, features)
        lengths = np.full(len(values), steps, np.int32)
        record: dict = {"shape": [steps, features, units], "rows": rows, "shards": args.shards,
                        "write_seconds": round(time.perf_counter() - start, 1)}
        result["models"][f"{steps}x{features}x{units}"] = record

        def alone(precision: str, device: str = args.device) -> dict:
            session = ScorerSession(model_dir, SessionOptions(device=device, fp16=precision == "fp16"),
                                    outputs=["embedding", "recon_error"])
            rates = {"provider": session.provider}
            for batch in ((16384, 65536) if device == "cuda" else (128,)):
                n = min(len(values), max(batch * 4, 8 * 65536) if device == "cuda" else 20_000)

                def run_all(batch=batch, n=n):
                    for s in range(0, n, batch):
                        session.run(values[s:s + batch], lengths[s:s + batch])

                rates[f"batch_{batch}_seq_s"] = round(median_rate(run_all, n, args.repeats))
            return rates

        def end_to_end(precision: str, workers: int | None, null: bool = False, read_batch: int = 16384) -> dict:
            runs, busy, parity = [], [], None
            for r in range(args.repeats):
                config = EmbedConfig(device=args.device, fp16=precision == "fp16", workers=workers,
                                     read_batch_size=read_batch, batch_size=read_batch if cuda else None)
                with BusyScorer() as meter:
                    where = Path(tempfile.mkdtemp(dir=tmp))
                    report = embed(model_dir, str(data), where / "out", config, null_scorer=null)
                shutil.rmtree(where)  # 2 M ECG rows write about 0.5 GB; a full run makes about 50 runs
                assert report.totals["rows_written"] == rows and not report.totals["shards_skipped"], report.totals
                runs.append(report.seconds)
                busy.append(meter.seconds / report.seconds)
                parity = report.fp16_parity or parity
            found = {"seq_s": round(rows / statistics.median(runs)), "scorer_busy": round(statistics.median(busy), 3),
                     "provider": report.provider, "batch_size": report.batch_size}
            if parity:
                found["fp16_parity"] = parity
            return found

        # one untimed run first: imports, the first session and threshold load fall on no figure
        where = Path(tempfile.mkdtemp(dir=tmp))
        embed(model_dir, str(data), where / "out", EmbedConfig(device=args.device))
        shutil.rmtree(where)
        for precision in precisions:
            step(record, f"alone_{precision}", lambda p=precision: alone(p))
        step(record, "alone_cpu_provider", lambda: alone("fp32", "cpu"))
        for precision in precisions:
            for w in workers:
                step(record, f"embed_{precision}_workers_{w}", lambda p=precision, w=w: end_to_end(p, w))
        for precision in precisions:
            step(record, f"embed_{precision}_workers_{workers[-1]}_batch_65536",
                 lambda p=precision: end_to_end(p, workers[-1], read_batch=65536))
        for variant in (v for v in args.variants.split(",") if v):
            def run_variant(variant=variant):
                with VARIANTS[variant]():
                    return end_to_end("fp32", workers[-1])

            step(record, f"embed_fp32_workers_{workers[-1]}_{variant}", run_variant)
        for w in (int(w) for w in args.null_workers.split(",") if w):
            step(record, f"null_workers_{w}", lambda w=w: end_to_end("fp32", w, null=True))

        def agreement() -> dict:
            outputs = ["embedding", "recon_error"]
            a = ScorerSession(model_dir, SessionOptions(device="cpu"), outputs=outputs).run(values[:512], lengths[:512])
            b = ScorerSession(model_dir, SessionOptions(device=args.device), outputs=outputs).run(values[:512],
                                                                                                 lengths[:512])
            return {k: float(np.abs(a[k] - b[k]).max()) for k in outputs}

        if cuda:
            step(record, "cuda_vs_cpu_max_abs", agreement)
        for precision in precisions:
            embeds = [v["seq_s"] for k, v in record.items() if k.startswith(f"embed_{precision}") and "seq_s" in v]
            solo = record.get(f"alone_{precision}", {})
            best_alone = max((v for k, v in solo.items() if k.endswith("seq_s")), default=None)
            if embeds and best_alone:
                record[f"best_embed_over_alone_{precision}"] = round(max(embeds) / best_alone, 3)
        save()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
