"""One class owns the onnxruntime session: device choice, thread settings, IO binding, placement.

No TensorFlow, no Prefect: this runs on inference images and on the GPU machine.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from seqae import names
from seqae.errors import ConfigError, DeviceError
from seqae.runtime import CPU, CUDA, cuda_usable

log = logging.getLogger(__name__)

Device = Literal["auto", "cuda", "cpu"]
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


@dataclass
class SessionOptions:
    """How to run.

    Args:
        device: ``cuda`` fails unless the CUDA provider really runs; ``auto`` uses CUDA when it
            does and otherwise the CPU, with a warning; ``cpu`` never touches CUDA.
        fp16: use ``scorer.fp16.onnx`` (CUDA only: an fp16 LSTM crashed the CPU provider).
        threads: CPU intra-op threads; ``None`` = the cores this process may use.
        allow_cpu_nodes: on CUDA, warn instead of failing when a heavy node runs on the CPU.
    """

    device: Device = "auto"
    fp16: bool = False
    threads: int | None = None
    allow_cpu_nodes: bool = False

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cuda", "cpu"):
            raise ConfigError(f"device: expected 'auto', 'cuda' or 'cpu', got {self.device!r}")
        if self.fp16 and self.device == "cpu":
            raise ConfigError("fp16: the fp16 scorer runs on CUDA only (an fp16 LSTM crashed onnxruntime's "
                              "CPU provider); drop --fp16 or use --device cuda")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: expected a positive integer, got {self.threads}")


class ScorerSession:
    """The onnxruntime session over a model directory's scorer, on one device, never silently moved.

    ``run(values, lengths)`` returns the scorer's outputs as numpy arrays. On CUDA, inputs are copied
    once through IO binding and outputs stay on the device until fetched.
    """

    def __init__(self, model_dir: str | os.PathLike, options: SessionOptions = SessionOptions(),
                 outputs: list[str] | None = None):
        import onnxruntime as ort

        self._ort = ort
        self.options = options
        directory = Path(model_dir)
        fp32_path = directory / names.SCORER_ONNX
        use_cuda = options.device == "cuda"
        if options.device in ("auto", "cuda"):
            usable = cuda_usable(str(fp32_path))
            if options.device == "cuda" and not usable:
                raise DeviceError(
                    "--device cuda: onnxruntime's CUDA provider is not usable here "
                    f"(available: {', '.join(ort.get_available_providers())}; no GPU, or CUDA 13/cuDNN 9 "
                    "libraries not found); use --device cpu or --device auto"
                )
            use_cuda = usable
            if options.device == "auto" and not usable:
                log.warning("no usable CUDA provider: running on the CPU (%d threads)", options.threads or physical_cores())
        if options.fp16 and not use_cuda:
            raise DeviceError("--fp16: needs the CUDA provider, which is not usable here; drop --fp16")
        self.path = directory / (names.SCORER_FP16_ONNX if options.fp16 else names.SCORER_ONNX)
        self.provider = CUDA if use_cuda else CPU
        self.session = self._create(profile=False)
        self.output_names = outputs or [o.name for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.session.get_inputs()]
        if sorted(self.input_names) != sorted([names.INPUT_VALUES, names.INPUT_LENGTHS]):
            raise ConfigError(f"{self.path}: expected inputs values and lengths, found {', '.join(self.input_names)}")
        if self.session.get_providers()[0] != self.provider:
            raise DeviceError(f"{self.path}: asked for {self.provider}, onnxruntime gave {self.session.get_providers()}")
        if use_cuda:
            self._check_placement()
            log.info("CUDA provider with IO binding%s", " (fp16)" if options.fp16 else "")

    def _create(self, profile: bool):
        ort = self._ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.provider == CPU:
            # One session, sequential graph; intra-op threads on the cores we may use. Reading and
            # writing run in other threads and mostly wait on I/O or release the GIL.
            so.intra_op_num_threads = self.options.threads or physical_cores()
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "seqae-placement")
        providers = [self.provider] if self.provider == CPU else [CUDA, CPU]
        return ort.InferenceSession(str(self.path), so, providers=providers)

    def _check_placement(self) -> None:
        """Run one small batch with profiling on and fail if a heavy node ran off the GPU
        (onnxruntime places nodes CUDA cannot run, e.g. a relu LSTM, on the CPU with only a warning)."""
        session = self._create(profile=True)
        num_features = session.get_inputs()[0].shape[2]
        session.run(None, {names.INPUT_VALUES: np.zeros((2, 4, num_features), np.float32),
                           names.INPUT_LENGTHS: np.full(2, 4, np.int32)})
        profile = Path(session.end_profiling())
        try:
            off = heavy_nodes_off(json.loads(profile.read_text()), CUDA)
        finally:
            profile.unlink(missing_ok=True)
        if off:
            message = (f"{self.path}: heavy node(s) placed off the GPU: {'; '.join(off)} (all numbers right, GPU "
                       "speed gone; a relu LSTM is one cause: retrain with activation tanh)")
            if not self.options.allow_cpu_nodes:
                raise DeviceError(message + "; pass --allow-cpu-nodes to run anyway")
            log.warning("%s", message)

    def run(self, values: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        """Args: values ``(batch, time, features)`` float32 raw; lengths ``(batch,)`` int32."""
        feed = {names.INPUT_VALUES: np.ascontiguousarray(values, dtype=np.float32),
                names.INPUT_LENGTHS: np.ascontiguousarray(lengths, dtype=np.int32)}
        if self.provider == CPU:
            return dict(zip(self.output_names, self.session.run(self.output_names, feed)))
        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, self._ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))
