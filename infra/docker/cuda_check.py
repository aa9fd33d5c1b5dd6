#!/usr/bin/env python3
"""Checks the CUDA image. Two levels, because a build machine has no GPU:

    python3 /usr/local/lib/seqae/cuda_check.py          # build time: the CUDA libraries load (no GPU needed)
    python3 /usr/local/lib/seqae/cuda_check.py --gpu    # run time, on a GPU node: a session runs on CUDA

`CUDAExecutionProvider in onnxruntime.get_available_providers()` only says that onnxruntime-gpu was
installed; it is true on a machine without any CUDA library. The build check loads, by soname, every
library onnxruntime-gpu 1.31 loads for the CUDA provider (the list `onnxruntime.preload_dlls` uses;
tests/infra checks the two agree) and checks that the provider's own libraries find all they link
against but the driver (`libcuda.so.1`, which the NVIDIA container toolkit or device plugin mounts at
run time). The GPU check needs the driver and a GPU: it initialises CUDA, counts devices and runs a
one-node model on the CUDA provider, refusing a silent fall-back to the CPU. Every failure is listed
before the exit status 1.
"""

import argparse
import base64
import ctypes
import subprocess
import sys
from pathlib import Path

# In load order (cuBLAS needs cuBLASLt): CUDA 13 runtime, cuBLAS/cuBLASLt 13, NVRTC 13, cuRAND 10,
# cuFFT 12, cuDNN 9.
CUDA_LIBRARIES = (
    "libcublasLt.so.13",
    "libcublas.so.13",
    "libnvrtc.so.13",
    "libcurand.so.10",
    "libcufft.so.12",
    "libcudart.so.13",
    "libcudnn.so.9",
)
DRIVER_LIBRARY = "libcuda.so.1"
PROVIDER_LIBRARIES = ("libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so")
# y = Relu(x), x and y float32 (1, 4), opset 17: small enough to carry inline.
PROBE_MODEL = base64.b64decode(
    "CAg6PwoMCgF4EgF5IgRSZWx1EgVwcm9iZVoTCgF4Eg4KDAgBEggKAggBCgIIBGITCgF5Eg4KDAgBEggKAggBCgIIBEIECgAQEQ==")


def library_failures() -> list[str]:
    """Returns one line per CUDA library that does not load and per unresolved link of the provider."""
    failures = []
    for name in CUDA_LIBRARIES:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError as error:
            failures.append(f"{name} does not load: {error}")
    import onnxruntime

    capi = Path(onnxruntime.__file__).parent / "capi"
    for provider in PROVIDER_LIBRARIES:
        path = capi / provider
        if not path.is_file():
            failures.append(f"{path} is missing: is onnxruntime-gpu (not onnxruntime) installed?")
            continue
        ldd = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False).stdout
        for line in ldd.splitlines():
            name = line.split("=>")[0].strip()
            if "not found" in line and name != DRIVER_LIBRARY:
                failures.append(f"{provider} links against {name}, which is not found")
    return failures


def gpu_failures() -> list[str]:
    """Returns what stops a session from running on a GPU here (empty when one does)."""
    try:
        driver = ctypes.CDLL(DRIVER_LIBRARY)
    except OSError as error:
        return [f"{DRIVER_LIBRARY} (the NVIDIA driver) does not load: {error}; run with --gpus all (docker) "
                "or request nvidia.com/gpu (Kubernetes)"]
    status = driver.cuInit(0)
    if status != 0:
        return [f"cuInit failed with CUDA error {status}: no usable GPU or a driver older than CUDA 13 needs (580)"]
    count = ctypes.c_int(0)
    driver.cuDeviceGetCount(ctypes.byref(count))
    if count.value < 1:
        return ["cuDeviceGetCount found no GPU"]
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(PROBE_MODEL, providers=["CUDAExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return [f"the session fell back to {session.get_providers()}: the CUDA provider could not start"]
    x = np.array([[-1.0, 0.0, 2.0, -3.0]], np.float32)
    (y,) = session.run(None, {"x": x})
    if not np.array_equal(y, np.maximum(x, 0)):
        return [f"the CUDA provider computed Relu({x.tolist()}) = {y.tolist()}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="also run a session on a GPU (needs one)")
    args = parser.parse_args(argv)
    failures = library_failures()
    if not failures and args.gpu:
        failures = gpu_failures()
    for failure in failures:
        print(f"cuda_check: {failure}", file=sys.stderr)
    if not failures:
        print("cuda_check: " + ("a session ran on the CUDA provider" if args.gpu else
                                f"{len(CUDA_LIBRARIES)} CUDA libraries load; the provider's links resolve"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
