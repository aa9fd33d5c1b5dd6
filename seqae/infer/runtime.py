"""Runtime probes: what onnxruntime and this machine can do (CUDA usable, cores, node placement).

No TensorFlow; export uses ``fp16_parity`` from here too."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from seqae import names

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
HEAVY_OPS = frozenset({"LSTM", "MatMul", "Gemm", "Loop"})


def physical_cores() -> int:
    """Cores this process may use (cgroup/affinity aware where the platform tells)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def heavy_nodes_off(profile_events: list[dict], provider: str) -> list[str]:
    """Names of heavy nodes (LSTM, MatMul, Gemm, Loop) that an onnxruntime profile shows running
    on another provider than ``provider``. Events are the JSON list ``end_profiling()`` writes."""
    off = set()
    for event in profile_events:
        args = event.get("args") or {}
        if event.get("cat") != "Node" or args.get("op_name") not in HEAVY_OPS:
            continue
        if args.get("provider") and args["provider"] != provider:
            off.add(f"{args['op_name']} {event.get('name', '').removesuffix('_kernel_time')} on {args['provider']}")
    return sorted(off)


@lru_cache(maxsize=1)
def preload_cuda() -> None:
    """Load the CUDA/cuDNN libraries onnxruntime-gpu needs, where the wheel can find them."""
    import contextlib
    import io

    import onnxruntime as ort

    chatter = io.StringIO()  # preload_dlls prints one line per library it cannot find
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            ort.preload_dlls()
    except Exception as exc:  # missing libraries show up when the session falls back
        log.debug("onnxruntime.preload_dlls: %s", exc)
    if chatter.getvalue():
        log.debug("onnxruntime.preload_dlls: %s", chatter.getvalue().strip())


def cuda_usable(model_path: str | bytes) -> bool:
    """True when a session on ``model_path`` (an fp32 graph: a file's path or its bytes) really runs
    on the CUDA provider.

    onnxruntime-gpu lists CUDA among the available providers even on a machine without a GPU, and
    a session asked for CUDA falls back to the CPU with only a logged error: so build one and look.
    """
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False
    preload_cuda()
    # A fallback is an expected answer here, not an error for the console: silence the probe.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(model_path, providers=[CUDA])
    finally:
        ort.set_default_logger_severity(2)
    usable = session.get_providers()[0] == CUDA
    log.debug("CUDA provider usable: %s", usable)
    return usable


def fp16_parity(fp16_path: str | Path | bytes, fp32_path: str | Path | bytes, values: np.ndarray,
                lengths: np.ndarray, outputs: list[str]) -> dict[str, Any]:
    """The fp16 scorer against the fp32 one, both on the CUDA provider, on the same rows (each graph
    a file's path or its bytes).

    Never runs on the CPU provider (an fp16 LSTM crashed it in a trial): without a usable CUDA
    provider the result says so and nothing runs.
    """
    import onnxruntime as ort

    fp16_path, fp32_path = (p if isinstance(p, bytes) else str(p) for p in (fp16_path, fp32_path))
    if not cuda_usable(fp32_path):
        return {"measured": False, "reason": "no usable CUDA provider here; the fp16 graph passed onnx.checker "
                "but was not run (`seqae embed --device cuda --fp16` measures it on the GPU)"}
    half = ort.InferenceSession(fp16_path, providers=[CUDA])
    full = ort.InferenceSession(fp32_path, providers=[CUDA])
    feed = {names.INPUT_VALUES: np.ascontiguousarray(values, dtype=np.float32),
            names.INPUT_LENGTHS: np.ascontiguousarray(lengths, dtype=np.int32)}
    result: dict[str, Any] = {"measured": True, "rows": int(len(lengths))}
    for name, x, y in zip(outputs, half.run(outputs, feed), full.run(outputs, feed)):
        diff = np.abs(x.astype(np.float64) - y)
        result[name] = {"max_abs": float(diff.max()),
                        "max_rel": float((diff / np.maximum(np.abs(y), 1e-6)).max())}
    return result
