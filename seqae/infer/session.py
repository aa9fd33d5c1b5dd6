"""One class owns the onnxruntime session: device choice, thread settings, IO binding, placement;
and a null scorer of the same shape for measuring the pipeline without the model.

No TensorFlow, no Prefect: this runs on inference images and on the GPU machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from seqae import names
from seqae.baseline import INPUT_WINDOWS, prepare_windows
from seqae.config import SessionOptions
from seqae.errors import ConfigError, DeviceError
from seqae.infer.runtime import CPU, CUDA, cuda_usable, heavy_nodes_off, physical_cores
from seqae.storage import Location

log = logging.getLogger(__name__)


def model_source(file: Location) -> str | bytes:
    """What ``onnxruntime.InferenceSession`` is built from: a local file's path, or the bytes of a
    file on any other ``pyarrow.fs`` filesystem (``s3://``, ``gs://``)."""
    return file.path if file.is_local else file.read_bytes()


def create_session(ort, source: str | bytes | None, provider: str, options: SessionOptions, profile: bool = False,
                   cuda_options: dict[str, str] | None = None):
    """An onnxruntime session over ``source`` on ``provider`` (CUDA falls back to nothing but the CPU
    nodes CUDA cannot run), with the thread settings of ``options``; ``cuda_options``: the CUDA
    provider's options."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if provider == CPU:
        # One session, sequential graph; intra-op threads on the cores we may use. Reading and
        # writing run in other threads and mostly wait on I/O or release the GIL.
        so.intra_op_num_threads = options.threads or physical_cores()
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "seqae-placement")
    providers = [provider] if provider == CPU else [(CUDA, cuda_options) if cuda_options else CUDA, CPU]
    return ort.InferenceSession(source, so, providers=providers)


class Scorer(Protocol):
    """What the embed job needs of a scorer: ``run`` plus the names it answers with."""

    provider: str
    output_names: list[str]

    def run(self, values: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]: ...


class NullScorer:
    """Outputs of the right shapes at no cost: measures the pipeline's own capacity (read, validate,
    decode, assemble, write) without the model, so that it can be set against the scorer's rate.

    The outputs are views of one fixed random block, read-only: zeros would cost less to encode and
    compress than a model's outputs do, and make the pipeline look faster than it is.
    """

    provider = "null"

    def __init__(self, output_names: list[str], embedding_dim: int):
        self.output_names = list(output_names)
        self.embedding_dim = embedding_dim
        self._noise = np.empty(0, np.float32)

    def _values(self, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        if self._noise.size < size:  # grown once to the largest call (one scoring thread calls run)
            self._noise = np.random.default_rng(0).random(size, dtype=np.float32)
            self._noise.setflags(write=False)
        return self._noise[:size].reshape(shape)

    def run(self, values: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        batch, steps = values.shape[0], values.shape[1]
        shapes = {names.EMBEDDING: (batch, self.embedding_dim), names.STEP_ERROR: (batch, steps)}
        return {name: self._values(shapes.get(name, (batch,))) for name in self.output_names}


class ScorerSession:
    """The onnxruntime session over a model directory's scorer, on one device, never silently moved.

    ``run(values, lengths)`` returns the scorer's outputs as numpy arrays. On CUDA, inputs are copied
    once through IO binding and outputs stay on the device until fetched.

    The ONNX file is read once into memory, hashed, and the session is built from those bytes: a
    file swapped after the check is never the one that runs. The bytes are dropped once the session
    exists; while it is built the process holds them beside onnxruntime's own copy (about twice the
    file: a few MiB for seqae's LSTMs; a graph past protobuf's 2 GiB limit could not be exported).
    """

    def __init__(self, model_dir: str | os.PathLike | Location, options: SessionOptions = SessionOptions(),
                 outputs: list[str] | None = None, *, sha256: Mapping[str, str] | None = None):
        """Args:
            sha256: the sha256 each ONNX file must have, by name (``seqae.json``'s ``files``); a file
                whose bytes differ raises ``ChecksumError``. ``None``: no check.
        """
        import onnxruntime as ort

        self._ort = ort
        self.options = options
        directory = Location.of(model_dir)
        self.path = directory.join(options.scorer_file)
        fp32: bytes | None = None  # the probe's graph; the session's too when it is the fp32 scorer
        use_cuda = options.device == "cuda"
        if options.device in ("auto", "cuda") and not options.int8:
            fp32 = self._read(directory, names.SCORER_ONNX, sha256)
            usable = cuda_usable(fp32)
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
        self._source: bytes | None = fp32 if fp32 is not None and options.scorer_file == names.SCORER_ONNX \
            else self._read(directory, options.scorer_file, sha256)
        self.provider = CUDA if use_cuda else CPU
        self.session = self._create(profile=False)
        self.output_names = outputs or [o.name for o in self.session.get_outputs()]
        self.input_names = [i.name for i in self.session.get_inputs()]
        values_input = next(i for i in self.session.get_inputs() if i.name == names.INPUT_VALUES) \
            if names.INPUT_VALUES in self.input_names else None
        self.num_features = values_input.shape[2] if values_input is not None and len(values_input.shape) == 3 else None
        if sorted(self.input_names) != sorted([names.INPUT_VALUES, names.INPUT_LENGTHS]):
            raise ConfigError(f"{self.path}: expected inputs values and lengths, found {', '.join(self.input_names)}")
        if self.session.get_providers()[0] != self.provider:
            raise DeviceError(f"{self.path}: asked for {self.provider}, onnxruntime gave {self.session.get_providers()}")
        if use_cuda:
            self._check_placement()
            log.info("CUDA provider with IO binding%s", " (fp16)" if options.fp16 else "")
        self._source = None  # the session holds the graph now

    @staticmethod
    def _read(directory: Location, name: str, sha256: Mapping[str, str] | None) -> bytes:
        """The bytes of ``directory/name``, read once (any ``pyarrow.fs`` filesystem), checked against
        ``sha256[name]`` when given."""
        file = directory.join(name)
        data = file.read_bytes()
        if sha256 is not None and name in sha256:
            from seqae.infer.artifacts import check_sha256

            where = str(Path(directory.path)) if directory.is_local else directory.uri
            check_sha256(file, hashlib.sha256(data).hexdigest(), sha256[name], where)
        return data

    def _create(self, profile: bool):
        return create_session(self._ort, self._source, self.provider, self.options, profile)

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


class NeighboursSession:
    """The nearest-training-window distance of windows (``neighbours.onnx``, ``seqae.baseline``) on
    the scorer's provider: windows are standardised and padded to the bank's layout here (numpy,
    ``prepare_windows``), the one matrix product against the bank and its least runs in onnxruntime,
    in calls of at most ``values_per_call`` distances (the ``(batch, bank)`` matrix onnxruntime holds).
    """

    #: Distances per onnxruntime call at most, by provider (float32: 64 MiB on the CPU, 1 GiB on a GPU).
    VALUES_PER_CALL = {CPU: 2 ** 24, CUDA: 2 ** 28}

    def __init__(self, model_dir: str | os.PathLike | Location, provider: str, options: SessionOptions, *,
                 window: int, mean, std, sha256: Mapping[str, str] | None = None):
        import onnxruntime as ort

        directory = Location.of(model_dir)
        self.path = directory.join(names.NEIGHBOURS_ONNX)
        source = ScorerSession._read(directory, names.NEIGHBOURS_ONNX, sha256)
        self.provider = provider
        # TF32 off: the distance is |b|^2 - 2 w.b + |w|^2, whose terms nearly cancel for a close window;
        # the CUDA provider's default TF32 Gemm keeps about 10 bits of each product
        self.session = create_session(ort, source, provider, options, cuda_options={"use_tf32": "0"})
        self.window = window
        self.mean, self.std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.bank_windows = int(meta.get("seqae.bank_windows", 1))
        if int(meta.get("seqae.window", window)) != window:
            raise ConfigError(f"{self.path}: a bank of windows of {meta['seqae.window']} steps; the model's window is "
                              f"{window}. Re-run `seqae export`")
        self.rows_per_call = max(self.VALUES_PER_CALL.get(provider, 2 ** 24) // max(self.bank_windows, 1), 1)

    def run(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(batch,)`` float32: each window's mean squared distance to its nearest training window."""
        out = np.empty(len(lengths), dtype=np.float32)
        for a in range(0, len(lengths), self.rows_per_call):
            windows, used = prepare_windows(values[a:a + self.rows_per_call], lengths[a:a + self.rows_per_call],
                                            self.window, self.mean, self.std, np.float32)
            out[a:a + len(used)] = self.session.run([names.NEAREST_DISTANCE], {INPUT_WINDOWS: windows,
                                                                               names.INPUT_LENGTHS: used})[0]
        return out


class WithNeighbours:
    """A scorer whose outputs also hold ``nearest_distance`` (``NeighboursSession``), as one ``Scorer``."""

    def __init__(self, scorer: Scorer, neighbours: NeighboursSession):
        self.scorer, self.neighbours = scorer, neighbours
        self.provider = scorer.provider
        self.output_names = [*scorer.output_names, names.NEAREST_DISTANCE]

    def run(self, values: np.ndarray, lengths: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.scorer.run(values, lengths)
        outputs[names.NEAREST_DISTANCE] = self.neighbours.run(values, lengths)
        return outputs
