"""onnxruntime facts that more than one module needs. No TensorFlow."""

from __future__ import annotations

import logging
from functools import lru_cache

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@lru_cache(maxsize=1)
def preload_cuda() -> None:
    """Load the CUDA/cuDNN libraries onnxruntime-gpu needs, where the wheel can find them."""
    import onnxruntime as ort

    try:
        ort.preload_dlls()
    except Exception as exc:  # missing libraries show up when the session falls back
        log.debug("onnxruntime.preload_dlls: %s", exc)


def cuda_usable(model_path: str) -> bool:
    """True when a session on ``model_path`` (an fp32 graph) really runs on the CUDA provider.

    onnxruntime-gpu lists CUDA among the available providers even on a machine without a GPU, and
    a session asked for CUDA falls back to the CPU with only a logged error: so build one and look.
    """
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False
    preload_cuda()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the fallback is the expected answer here, not an error
    session = ort.InferenceSession(model_path, options, providers=[CUDA])
    return session.get_providers()[0] == CUDA
