"""Export a trained model directory to ONNX (encoder and scorer) and gate it on parity with Keras.

``export`` runs small steps, each a function here: ``convert`` (Keras -> ONNX with tf2onnx, checked by
``check_graph``), ``save_graphs``, ``check_parity`` (``validate_parity``: every failure is listed
before one raise), ``write_variants`` (fp16, int8), ``export_record`` (what ``seqae.json`` records),
then the held-out reference and the commit. What each graph outputs comes from the mode
(``seqae.config.MODES``, ``graph_outputs``).

Variable length: the graphs never use the LSTM's ``sequence_lens``, which slowed the CUDA provider
down as soon as one row of a batch was shorter than its time axis. The causal formulation (run the
LSTM over the padded batch, gather step ``length - 1``, mask errors by ``lengths``) runs at full
speed on both providers and equals Keras masking; the embed job trims each batch to its longest row.
The measurements behind this choice are in docs/export.md.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqae import names
from seqae._optional import import_optional
from seqae._version import __version__
from seqae.config import DataConfig, ExportConfig, ModelConfig
from seqae.data import ShardReader, resolve_shards
from seqae.errors import ModelDirError, ParityError, SeqaeError
from seqae.infer.artifacts import sha256_of
from seqae.infer.runtime import fp16_parity
from seqae.modeldir import ModelInfo, contract_sha256, write_metadata
from seqae.modelstore import staged_model_dir
from seqae.storage import write_bytes

log = logging.getLogger(__name__)
#: Absolute floor of the bank's parity, in standardised squared units per value: float32 sums of
#: values near 1 over a window cancel to about 1e-7 of them.
NEIGHBOURS_ATOL = 1e-5


@dataclass(frozen=True)
class Tolerance:
    """Parity tolerances (the fields of the same names in ``ExportConfig``).

    Attributes:
        embedding_atol: absolute, per embedding value.
        error_rtol: relative, per sequence, on ``recon_error`` and ``pred_error``.
        step_error_rtol: relative to the largest step error of the same sequence, per step: an
            elementwise relative bound means nothing for steps whose error is near zero, and two
            float32 LSTM implementations drift apart step by step (figures in docs/export.md).
        error_atol_floor: absolute floor on all errors (a relative difference of an error of 1e-9
            says nothing).
    """

    embedding_atol: float
    error_rtol: float
    step_error_rtol: float
    error_atol_floor: float

    @classmethod
    def of(cls, config: ExportConfig) -> Tolerance:
        return cls(config.embedding_atol, config.error_rtol, config.step_error_rtol, config.error_atol_floor)

    def allowed(self, output: str, reference: np.ndarray) -> np.ndarray:
        """Allowed absolute difference for each value of ``reference`` ``(rows, ...)``."""
        if output == names.EMBEDDING:
            return np.full(reference.shape, self.embedding_atol)
        if output == names.STEP_ERROR:
            scale = np.abs(reference).max(axis=1, keepdims=True)
            return np.broadcast_to(self.step_error_rtol * scale + self.error_atol_floor, reference.shape)
        return self.error_rtol * np.abs(reference) + self.error_atol_floor


@dataclass
class Check:
    """One output of one ONNX file compared with Keras, for one case and batch size."""

    file: str
    output: str
    case: str
    batch_size: int
    ok: bool
    max_abs: float | None = None
    max_rel: float | None = None
    problem: str | None = None

    def line(self) -> str:
        mark = "ok " if self.ok else "FAIL"
        where = f"{self.file} {self.output} ({self.case}, batch {self.batch_size})"
        if self.problem:
            return f"{mark} {where}: {self.problem}"
        return f"{mark} {where}: max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}"


@dataclass
class ParityReport:
    tolerance: dict[str, float]
    rows: int
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> dict[str, Any]:
        worst: dict[str, dict[str, float]] = {}
        for c in self.checks:
            if c.max_abs is None or c.max_rel is None:  # a shape problem: no figures (set together)
                continue
            key = f"{c.file}:{c.output}"
            w = worst.setdefault(key, {"max_abs": 0.0, "max_rel": 0.0})
            w["max_abs"] = max(w["max_abs"], c.max_abs)
            w["max_rel"] = max(w["max_rel"], c.max_rel)
        return {"passed": not self.failures, "rows": self.rows, "tolerance": self.tolerance,
                "worst": worst, "failures": [asdict(c) for c in self.failures],
                "checks": len(self.checks)}


# --- conversion -------------------------------------------------------------------------------

def graph_outputs(config: ModelConfig) -> dict[str, list[str]]:
    """The outputs of each graph: the encoder's embedding, and the scorer's outputs of the mode."""
    return {"encoder": [names.EMBEDDING], "scorer": config.output_names}


def _convert(model, num_features: int, outputs: list[str], opset: int):
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, None, num_features), tf.float32, name=names.INPUT_VALUES),
            tf.TensorSpec((None,), tf.int32, name=names.INPUT_LENGTHS))

    @tf.function(input_signature=spec)
    def run(values, lengths):
        result = model({names.INPUT_VALUES: values, names.INPUT_LENGTHS: lengths}, training=False)
        return {k: result[k] for k in outputs} if isinstance(result, dict) else {outputs[0]: result}

    proto, _ = tf2onnx.convert.from_function(run, input_signature=spec, opset=opset)
    return proto


def convert(trained, opset: int) -> dict[str, Any]:
    """Both graphs of a ``seqae.model.TrainedModel``, ``{"encoder": ModelProto, "scorer": ModelProto}``.

    Raises:
        SeqaeError: a graph does not have the expected shape (``check_graph``: fused LSTM ops only).
    """
    from seqae.model import encoder_of

    cfg = trained.config
    keras_models = {"encoder": encoder_of(trained.model), "scorer": trained.model}
    protos = {kind: _convert(keras_models[kind], cfg.num_features, outputs, opset)
              for kind, outputs in graph_outputs(cfg).items()}
    problems = [p for kind, proto in protos.items() for p in check_graph(proto, cfg, kind)]
    if problems:
        raise SeqaeError("exported graph has an unexpected shape: " + "; ".join(problems))
    return protos


def expected_graph(config, kind: str) -> dict[str, Any]:
    """What a correct graph holds: fused LSTM count, and whether a ``Loop`` may appear."""
    decoders = len(config.mode_spec.trains)
    if kind == "encoder":
        return {"lstm": config.num_layers, "loop": 0}
    if config.decoder == "conditioned":
        # Free-running decoders feed each output back as the next input: one Loop per decoder,
        # each running the LSTM cell step by step. Only the encoder stays a fused LSTM.
        return {"lstm": config.num_layers, "loop": decoders}
    return {"lstm": config.num_layers * (1 + decoders), "loop": 0}


def check_graph(proto, config, kind: str) -> list[str]:
    """Problems with the graph's shape: fused LSTM count, no Scan, Loop only where expected, and no
    per-step MatMul (the count of MatMul must not depend on the sequence length)."""
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    expected = expected_graph(config, kind)
    problems = []
    if counts["LSTM"] != expected["lstm"]:
        problems.append(f"{kind}: expected {expected['lstm']} fused LSTM op(s), found {counts['LSTM']}")
    if counts["Scan"]:
        problems.append(f"{kind}: expected no Scan, found {counts['Scan']}")
    if counts["Loop"] != expected["loop"]:
        problems.append(f"{kind}: expected {expected['loop']} Loop op(s), found {counts['Loop']}")
    decoders = len(config.mode_spec.trains)
    # bottleneck (x2 in predict modes) + one projection per decoder (+ init states) per layer
    matmul_bound = 2 + decoders * (1 + config.num_layers) + 2
    if counts["MatMul"] + counts["Gemm"] > matmul_bound:
        problems.append(f"{kind}: expected at most {matmul_bound} MatMul/Gemm ops (one per Dense), "
                        f"found {counts['MatMul'] + counts['Gemm']}: a per-step unrolled graph?")
    return problems


def _set_metadata(proto, props: dict[str, Any]) -> None:
    import onnx

    onnx.helper.set_model_props(proto, {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()})


def _save(proto, path: Path) -> None:
    write_bytes(path, proto.SerializeToString())


def to_int8(fp32_path: Path, int8_path: Path, nodes: list[str] | None = None) -> None:
    """Dynamic int8 quantization (onnxruntime.quantization) of the LSTM and MatMul weights, per output
    channel, or of ``nodes`` only; written atomically. Activations are quantized per call, so no
    calibration data is needed."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".int8-") as tmp:
        out = Path(tmp) / int8_path.name
        quantize_dynamic(str(fp32_path), str(out), op_types_to_quantize=["LSTM", "MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8, nodes_to_quantize=nodes)
        os.replace(out, int8_path)


def int8_candidates(proto, cfg: ModelConfig) -> list[tuple[str, list[str] | None]]:
    """What to quantize, most first: every LSTM and MatMul; else the encoder's LSTMs only (a decoder
    that runs from its initial state alone accumulates the weights' rounding over every step; on
    ECG5000 its errors moved by 7% where the encoder's moved by 0.3%). The encoder's LSTMs come
    first in the graph's topological order."""
    lstms = [n.name for n in proto.graph.node if n.op_type == "LSTM"]
    return [("all LSTM and MatMul weights", None), ("the encoder's LSTM weights", lstms[: cfg.num_layers])]


def int8_parity(int8_path: Path, fp32_path: Path, values: np.ndarray, lengths: np.ndarray, outputs: list[str],
                config: ExportConfig) -> dict[str, Any]:
    """The int8 scorer against the fp32 one on the CPU provider, on the parity rows."""
    import onnxruntime as ort

    feed = {names.INPUT_VALUES: np.ascontiguousarray(values, dtype=np.float32),
            names.INPUT_LENGTHS: np.ascontiguousarray(lengths, dtype=np.int32)}
    wanted = [o for o in outputs if o != names.STEP_ERROR]
    quantized = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"]).run(wanted, feed)
    full = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).run(wanted, feed)
    return variant_parity(dict(zip(wanted, quantized)), dict(zip(wanted, full)), config.int8_embedding_atol,
                          config.int8_error_rtol, config.int8_error_rtol_p99, config.error_atol_floor)


def variant_parity(variant: dict[str, np.ndarray], full: dict[str, np.ndarray], embedding_atol: float,
                   error_rtol: float, error_rtol_p99: float, floor: float) -> dict[str, Any]:
    """A lower-precision scorer's outputs against the fp32 scorer's on the same rows: the embedding
    by its largest absolute difference, each error by the median and 99th percentile over rows of its
    relative difference (per-step errors: a row's largest difference over its largest error;
    ``passed`` when all are within the bounds; a non-finite output never passes)."""
    result: dict[str, Any] = {"rows": int(len(next(iter(full.values())))), "tolerance": {
        "embedding_atol": embedding_atol, "error_rtol_median": error_rtol, "error_rtol_p99": error_rtol_p99}}
    passed = True
    for name, f in full.items():
        diff = np.abs(variant[name].astype(np.float64) - f)
        passed &= bool(np.isfinite(diff).all())
        if name == names.EMBEDDING:
            result[name] = {"max_abs": float(diff.max())}
            passed &= bool(diff.max() <= embedding_atol)
        else:
            if f.ndim > 1:  # per-step errors: each row's largest difference, relative to its largest error
                axes = tuple(range(1, f.ndim))
                diff, f = diff.max(axis=axes), np.abs(f).max(axis=axes)
            rel = diff / np.maximum(np.abs(f), floor)
            result[name] = {"median_rel": float(np.median(rel)), "p99_rel": float(np.quantile(rel, 0.99)),
                            "max_rel": float(rel.max())}
            passed &= bool(np.median(rel) <= error_rtol and np.quantile(rel, 0.99) <= error_rtol_p99)
    result["passed"] = passed
    return result


def fp16_reference_parity(half, fp32_path: Path, values: np.ndarray, lengths: np.ndarray, outputs: list[str],
                          config: ExportConfig, min_length: int, rows: int = 32) -> dict[str, Any]:
    """The fp16 scorer against the fp32 one where no GPU is needed: the fp16 graph run by ONNX's
    reference evaluator (numpy float16), the fp32 one by the CPU provider (onnxruntime's CPU provider
    must never run an fp16 LSTM: it crashed in a trial), on the ``rows`` longest parity rows (long
    rows are where float16 runs out of exact integers) and ``rows`` of them cut to random lengths
    (at least ``min_length``, the model's);
    every output, per-step errors included. It checks the graph, not CUDA's kernels: ``seqae embed
    --device cuda --fp16`` measures those. Where the evaluator cannot run the fp32 graph either (it
    lacks some ops' corners: a conditioned decoder's Loop), nothing is measured and the file is kept."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops import op_one_hot

    class OneHot(op_one_hot.OneHot):  # the evaluator refuses a depth of shape [1], as tf2onnx writes it
        def _run(self, indices, depth, values, axis=None):
            return super()._run(indices, np.asarray(depth).reshape(()), values, axis=axis)

    def evaluator(graph):
        return ReferenceEvaluator(graph, new_ops=[OneHot])  # matched by the class's name

    longest = np.argsort(-lengths, kind="stable")[:rows]
    cut_values, cut_lengths = parity_cases(values[:rows], lengths[:rows], min_length)["random lengths"]
    feed = {names.INPUT_VALUES: np.ascontiguousarray(np.concatenate([values[longest], cut_values]), dtype=np.float32),
            names.INPUT_LENGTHS: np.concatenate([lengths[longest], cut_lengths]).astype(np.int32)}
    count = int(len(feed[names.INPUT_LENGTHS]))
    by = "the ONNX reference evaluator (numpy float16) against fp32 on the CPU provider"
    try:
        with np.errstate(all="ignore"):  # an overflow shows as a non-finite output, which fails
            got = list(evaluator(half).run(outputs, feed))
    except Exception as exc:  # noqa: BLE001 - a graph the evaluator cannot run is not vouched for
        error = f"{type(exc).__name__}: {exc}"[:500]
        try:
            with np.errstate(all="ignore"):
                evaluator(onnx.load(str(fp32_path))).run(outputs, feed)
        except Exception:  # noqa: BLE001 - nor the fp32 graph: the evaluator's limit, not the file's
            return {"measured": False, "reason": f"the ONNX reference evaluator cannot run this graph in fp32 "
                    f"either ({error}); `seqae embed --device cuda --fp16` measures it on the GPU"}
        return {"measured": True, "by": by, "rows": count, "passed": False, "error": error}
    full = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).run(outputs, feed)
    return {"measured": True, "by": by,
            **variant_parity(dict(zip(outputs, got)), dict(zip(outputs, full)), config.fp16_embedding_atol,
                             config.fp16_error_rtol, config.fp16_error_rtol_p99, config.error_atol_floor)}


def isolate_outputs(graph) -> None:
    """Give each graph output that other nodes also consume its own Identity node.

    The fp16 converter casts graph outputs back to float32 in place; without this, the nodes that
    read ``embedding`` inside the scorer would receive the float32 copy.
    """
    from onnx import helper

    consumed = {i for n in graph.node for i in n.input}
    for name in sorted({o.name for o in graph.output} & consumed):
        inner = f"{name}__inner"
        for node in graph.node:
            node.output[:] = [inner if o == name else o for o in node.output]
            node.input[:] = [inner if i == name else i for i in node.input]
        graph.node.append(helper.make_node("Identity", [inner], [name], name=f"{name}__output"))


def to_fp16(proto):
    """fp16 weights and compute, float32 inputs and outputs (Cast at the edges). CUDA only.

    Two things onnxconverter-common gets wrong for these graphs are mended here:

    - It leaves the graph's own ``Cast(to=float)`` nodes as they are, which breaks type inference
      downstream; inside the graph (subgraphs included) they must cast to float16.
    - tf2onnx does integer arithmetic in float: a patched model's step counts (``Cast`` to float,
      ``Max``, ``Cast`` back, with a sentinel of 1e9), the masks of steps past a row's length (time
      index and length cast to float and compared) and a loop's counter. In float16, 1e9 is infinity
      and an integer is exact only to 2048: the scorer sliced no rows, and a row of more than 2048
      steps lost its last steps. Such islands (``float_islands``) stay float32.
    """
    import onnx
    from onnx import TensorProto
    from onnxconverter_common import float16

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    isolate_outputs(proto.graph)
    del proto.graph.value_info[:]
    islands = float_islands(proto, float16.DEFAULT_OP_BLOCK_LIST)
    own_constants(proto.graph, islands)
    own = {n.name for g in _graphs(proto.graph) for n in g.node if n.op_type == "Cast"}
    half = float16.convert_float_to_float16(proto, keep_io_types=True, node_block_list=sorted(islands))
    outputs = {o.name for o in half.graph.output}
    for graph in _graphs(half.graph):
        collapse_round_trips(graph, own, islands, keep=outputs)
        for node in graph.node:
            if node.op_type == "Cast" and node.name in own and node.name not in islands \
                    and not set(node.output) & outputs:
                for attr in node.attribute:
                    if attr.name == "to" and attr.i == TensorProto.FLOAT:
                        attr.i = TensorProto.FLOAT16
    onnx.checker.check_model(half, full_check=True)
    return half


def _graphs(graph) -> list:
    """``graph`` and every subgraph in it (a Loop's body, an If's branches), outermost first."""
    import onnx

    found = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found += _graphs(attr.g)
            for sub in attr.graphs:
                found += _graphs(sub)
    return found


#: Ops that read float values and write no float: where an island of integer arithmetic in float may end.
COMPARISONS = ("Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal")


def float_islands(proto, kept_float32: list[str]) -> set[str]:
    """Names of the nodes (in every graph of ``proto``) that do integer arithmetic in float: from a
    ``Cast`` of an integer or boolean tensor to float, every node its float values reach, when all
    of them are casts, comparisons or ops the fp16 converter keeps in float32 (``kept_float32``),
    so that the float values end in a cast to a non-float type or a comparison. A cast whose values
    meet real float compute (a mask that multiplies activations) is no island: float16 serves it."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(proto)
    types: dict[str, int] = {}
    for graph in _graphs(inferred.graph):
        for v in [*graph.value_info, *graph.input, *graph.output]:
            types[v.name] = v.type.tensor_type.elem_type
        types.update({i.name: i.data_type for i in graph.initializer})
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE}
    allowed = set(kept_float32) | {"Cast", *COMPARISONS}
    found: set[str] = set()
    for graph in _graphs(proto.graph):
        readers: dict[str, list] = {}
        for node in (n for g in _graphs(graph) for n in g.node):  # a subgraph may read by name
            for name in node.input:
                readers.setdefault(name, []).append(node)
        graph_outputs = {o.name for o in graph.output}
        for start in graph.node:
            if start.op_type != "Cast" or types.get(start.input[0]) in floats | {None} \
                    or not any(types.get(o) == TensorProto.FLOAT for o in start.output):
                continue
            island, todo, ok = {start.name}, [start], True
            while todo and ok:
                node = todo.pop()
                for out in node.output:
                    if types.get(out) not in floats:
                        continue
                    if out in graph_outputs or not readers.get(out):
                        ok = False
                    for reader in readers.get(out, []):
                        if reader.op_type not in allowed:
                            ok = False
                        elif reader.name not in island:
                            island.add(reader.name)
                            todo.append(reader)
            if ok:
                found |= island
    return found


def own_constants(graph, islands: set[str]) -> None:
    """Give the nodes of ``islands`` their own copy of each float initializer that other nodes read
    too (tf2onnx shares one zero between an LSTM's initial state and a loop's condition): the
    converter keeps an initializer that a float32 node reads in float32 for every reader."""
    from onnx import TensorProto

    floats = {i.name: i for i in graph.initializer if i.data_type == TensorProto.FLOAT}
    nodes = [n for g in _graphs(graph) for n in g.node]
    shared = {name for name in floats if any(name in n.input for n in nodes if n.name not in islands)}
    for node in (n for n in nodes if n.name in islands):
        for k, name in enumerate(node.input):
            if name in shared:
                copy = f"{name}__float32"
                if copy not in floats:
                    floats[copy] = graph.initializer.add()
                    floats[copy].CopyFrom(floats[name])
                    floats[copy].name = copy
                node.input[k] = copy


def collapse_round_trips(graph, own: set[str], islands: set[str], keep: set[str] | None = None) -> None:
    """Wire around the converter's float32 -> float16 casts where what reads the float16 copy wants
    float32: its casts back (between two nodes it keeps in float32: the round trip only loses precision
    and range), and the nodes of ``islands`` (a subgraph's, which the converter gives no cast of its
    own). ``keep``: tensors that must stay (the model's outputs)."""
    from onnx import TensorProto

    def to(node) -> int | None:
        return next((a.i for a in node.attribute if a.name == "to"), None)

    keep = {o.name for o in graph.output} | (keep or set())
    everywhere = [n for g in _graphs(graph) for n in g.node]  # a subgraph may read a tensor by name
    removed = []
    for half in [n for n in graph.node if n.op_type == "Cast" and n.name not in own and to(n) == TensorProto.FLOAT16]:
        source, copy = half.input[0], half.output[0]
        for reader in everywhere:
            if copy not in reader.input:
                continue
            if reader.op_type == "Cast" and reader.name not in own and to(reader) == TensorProto.FLOAT \
                    and reader.output[0] not in keep:
                back = reader.output[0]
                for other in everywhere:
                    other.input[:] = [source if i == back else i for i in other.input]
                removed.append(reader)
            elif reader.name in islands:
                reader.input[:] = [source if i == copy else i for i in reader.input]
    for node in removed:
        for g in _graphs(graph):
            if node in g.node:
                g.node.remove(node)
    consumed = {i for g in _graphs(graph) for n in g.node for i in n.input}
    for node in [n for n in graph.node if n.op_type == "Cast" and n.name not in own
                 and to(n) == TensorProto.FLOAT16 and not (set(n.output) & (consumed | keep))]:
        graph.node.remove(node)


# --- parity -----------------------------------------------------------------------------------

def sample_rows(data: str, data_config: DataConfig, num_features: int, rows: int = 256,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``rows`` accepted sequences from the first shards at ``data``: ``(values, lengths)``."""
    values, lengths, have = [], [], 0
    for shard in resolve_shards(data):
        for batch, _ in ShardReader(shard, data_config, num_features=num_features, batch_size=rows):
            values.append(batch.values)
            lengths.append(batch.lengths)
            have += len(batch)
            if have >= rows:
                break
        if have >= rows:
            break
    if not have:
        raise SeqaeError(f"{data}: no accepted row to check parity on")
    longest = max(v.shape[1] for v in values)
    padded = np.concatenate([np.pad(v, ((0, 0), (0, longest - v.shape[1]), (0, 0))) for v in values])
    return padded[:rows], np.concatenate(lengths)[:rows]


def parity_cases(values: np.ndarray, lengths: np.ndarray, min_length: int, seed: int = 0):
    """The real rows as they are, and the same rows cut to random lengths (post-padded with zeros)."""
    rng = np.random.default_rng(seed)
    cut = np.array([rng.integers(min(min_length, n), n + 1) for n in lengths], dtype=np.int32)
    short = values.copy()
    short[np.arange(values.shape[1])[None, :] >= cut[:, None]] = 0.0
    return {"real rows": (values, lengths.astype(np.int32)), "random lengths": (short, cut)}


def _keras_runner(model, outputs):
    """The Keras model as one compiled function (eager calls at batch 1 take seconds each)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(values, lengths):
        result = model({names.INPUT_VALUES: values, names.INPUT_LENGTHS: lengths}, training=False)
        return {k: result[k] for k in outputs}

    return lambda values, lengths: {k: v.numpy() for k, v in run(values, lengths).items()}


def validate_parity(model, config, onnx_paths: dict[str, Path], values: np.ndarray, lengths: np.ndarray, *,
                    tolerance: Tolerance = Tolerance.of(ExportConfig()), batch_sizes: tuple[int, ...] = (1, 64),
                    single_batch_rows: int = 32) -> ParityReport:
    """Run each ONNX file in onnxruntime (CPU) against the Keras model; list every mismatch.

    Args:
        model: the Keras autoencoder.
        config: its ``ModelConfig``.
        onnx_paths: ``{"encoder": path, "scorer": path}``.
        values, lengths: rows in raw units, ``(rows, time, features)`` and ``(rows,)``.
        batch_sizes: each case runs at each batch size (batches trimmed to their own longest row,
            as the embed job does); batch size 1 uses the first ``single_batch_rows`` rows.

    Returns:
        The report; it lists failures but does not raise (``export`` does).
    """
    import onnxruntime as ort

    report = ParityReport(asdict(tolerance), rows=len(lengths))
    outputs_of = graph_outputs(config)
    sessions = {kind: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                for kind, path in onnx_paths.items()}
    keras_run = _keras_runner(model, config.output_names)
    for case, (case_values, case_lengths) in parity_cases(values, lengths, config.min_length).items():
        for batch_size in batch_sizes:
            n = min(len(case_lengths), single_batch_rows) if batch_size == 1 else len(case_lengths)
            got: dict[tuple[str, str], list] = collections.defaultdict(list)
            want: dict[str, list] = collections.defaultdict(list)
            shape_problems: dict[tuple[str, str], str] = {}
            for start in range(0, n, batch_size):
                lens = case_lengths[start:start + batch_size]
                vals = np.ascontiguousarray(case_values[start:start + batch_size, : int(lens.max())])
                ref = keras_run(vals, lens)
                for name in config.output_names:
                    want[name].append(ref[name].reshape(len(lens), -1))
                for kind, session in sessions.items():
                    arrays = session.run(outputs_of[kind], {names.INPUT_VALUES: vals, names.INPUT_LENGTHS: lens})
                    for name, array in zip(outputs_of[kind], arrays):
                        if array.shape != ref[name].shape:
                            shape_problems.setdefault((kind, name), f"shape {array.shape}, Keras {ref[name].shape}")
                        else:
                            got[kind, name].append(array.reshape(len(lens), -1))
            for kind, outputs in outputs_of.items():
                if kind not in sessions:
                    continue
                file = onnx_paths[kind].name
                for name in outputs:
                    if (kind, name) in shape_problems:
                        report.checks.append(Check(file, name, case, batch_size, False,
                                                   problem=shape_problems[kind, name]))
                        continue
                    width = max(x.shape[1] for x in want[name])
                    a = np.concatenate([np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in got[kind, name]])
                    b = np.concatenate([np.pad(x, ((0, 0), (0, width - x.shape[1]))) for x in want[name]])
                    diff = np.abs(a.astype(np.float64) - b)
                    rel = diff / np.maximum(np.abs(b), 1e-12)
                    ok = bool(np.isfinite(a).all() and (diff <= tolerance.allowed(name, b)).all())
                    report.checks.append(Check(file, name, case, batch_size, ok, float(diff.max()),
                                               float(rel[diff > 0].max()) if (diff > 0).any() else 0.0))
    for check in report.checks:
        (log.info if check.ok else log.error)("%s", check.line())
    return report


@dataclass(frozen=True)
class _Split:
    """The training's validation split of the export's data, as training made it."""

    shards: list
    train: Any  # TrainConfig
    row_filter: Any  # RowFilter | None
    split: Any  # seqae.train.Split
    held_out: bool


def _training_split(info, data: str) -> _Split:
    from seqae.config import TrainConfig
    from seqae.data import RowFilter
    from seqae.train import choose_split

    training = info.metadata.get("training", {})
    train = TrainConfig.from_dict(training.get("config", {}), "training config")
    recorded = training.get("validation", {}).get("method")
    if recorded in ("key", "time"):  # the split training made, even where "auto" would now decide otherwise
        train = dataclasses.replace(train, validation_split=recorded)
    row_filter = RowFilter.parse(train.row_filter) if train.row_filter else None
    shards = resolve_shards(data)
    split = choose_split(shards, info.data, train, num_features=info.model.num_features, row_filter=row_filter)
    held_out = training.get("validation_rows", 1) > 0 and split.method != "none"
    return _Split(shards, train, row_filter, split, held_out)


def _reference(directory: Path, info, data: str, split: _Split) -> dict[str, Any]:
    """Score the rows held out from training (the validation split; the training rows when there
    was none) with the exported scorer: the reference for thresholds and drift."""
    from seqae.anomaly import write_reference
    from seqae.train import iter_split

    batches = iter_split(split.shards, info.data, split.train, validation=split.held_out,
                         num_features=info.model.num_features, row_filter=split.row_filter, split=split.split)
    return write_reference(directory, batches, f"validation split ({split.split.method})" if split.held_out
                           else "training rows")


def write_neighbours(staging: Path, info, data: str, split: _Split, props: dict[str, Any], config: ExportConfig,
                     values: np.ndarray, lengths: np.ndarray) -> tuple[Path | None, dict[str, Any]]:
    """Long layout: ``neighbours.onnx``, the bank of every full window of the training data at stride 1
    (``training.data`` of ``seqae.json``, its row filter applied; ``data`` where none is recorded),
    checked against the same distances in float64 (``seqae.baseline.NearestWindows``) on the parity
    rows, moved off the bank by a little noise so that the check is not of distances near 0; and
    ``neighbours.parquet``, the training windows at the model's stride scored against the bank without
    the windows that overlap them (``reference_distances``), which ``seqae threshold`` fits the step
    threshold on.

    Returns:
        ``neighbours.onnx`` (None where the training data holds no full window: the model is
        exported without a bank, with a warning) and ``seqae.json``'s ``export.neighbours`` record.

    Raises:
        ParityError: the graph's distances differ from float64 beyond ``error_rtol`` (relative) and
            ``NEIGHBOURS_ATOL``; the served files are left as they were.
    """
    import onnxruntime as ort
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqae.baseline import INPUT_WINDOWS, NearestWindows

    started = time.perf_counter()
    source = info.metadata.get("training", {}).get("data") or data
    try:
        bank = NearestWindows.build(source, info.data, info.model.num_features, info.metadata["normalization"],
                                    max_windows=config.neighbours_max_windows or None, row_filter=split.row_filter)
    except SeqaeError as exc:  # e.g. every series shorter than the window: the model exports without a bank
        log.warning("%s: exported without %s (steps are scored by window_error_min): %s", info.directory,
                    names.NEIGHBOURS_ONNX, exc)
        return None, {"written": False, "reason": str(exc)}
    proto = bank.to_onnx({k: str(v) for k, v in props.items()} | {"seqae.precision": "fp32"})
    path = staging / names.NEIGHBOURS_ONNX
    _save(proto, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # the parity rows are training windows, most of them in the bank: moved off it by noise of a tenth
    # of each feature's spread, so that the distances are those of new windows, not 0
    noise = np.random.default_rng(0).normal(0.0, 0.1, values.shape) * np.asarray(info.metadata["normalization"]["std"])
    moved = np.where(np.arange(values.shape[1])[None, :, None] < lengths[:, None, None], values + noise, 0.0)
    want = bank.distances(moved, lengths)
    windows, used = bank.prepare(moved, lengths, np.float32)
    got = session.run([names.NEAREST_DISTANCE], {INPUT_WINDOWS: windows, names.INPUT_LENGTHS: used})[0]
    diff = np.abs(got.astype(np.float64) - want)
    passed = bool(np.isfinite(got).all() and (diff <= config.error_rtol * np.abs(want) + NEIGHBOURS_ATOL).all())
    own, scored = bank.reference_distances(source, info.data, row_filter=split.row_filter)
    finite = own[np.isfinite(own)]
    reference = {"what": "windows of the training data at the model's stride against the bank without the windows "
                         "that overlap them; NaN between runs", **scored,
                 "nearest_distance_median": float(np.median(finite)) if len(finite) else None}
    table = pa.table({names.NEAREST_DISTANCE: own.astype(np.float32)}).replace_schema_metadata(
        {names.PARQUET_METADATA_KEY: json.dumps(reference)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes(staging / names.NEIGHBOURS_REFERENCE_FILE, sink.getvalue().to_pybytes())
    record = {"written": True, **{k: v for k, v in bank.describe().items() if k != "what"},
              "bytes": path.stat().st_size, "reference": reference,
              "parity": {"passed": passed, "rows": int(len(want)), "max_abs": float(diff.max()),
                         "max_rel": float((diff / np.maximum(want, 1e-12)).max()),
                         "by": "neighbours.onnx (float32, CPU provider) against seqae.baseline in float64, on the "
                               "parity rows with noise of 0.1 standard deviations",
                         "rtol": config.error_rtol, "atol": NEIGHBOURS_ATOL},
              "seconds": round(time.perf_counter() - started, 3)}
    if not passed:
        error = ParityError(f"{info.directory}: {names.NEIGHBOURS_ONNX}: its distances differ from float64 beyond "
                            f"tolerance (largest difference {float(diff.max()):.3g}); the served files are left "
                            "as they were")
        error.report = record  # type: ignore[attr-defined]
        raise error
    return path, record


# --- the command ------------------------------------------------------------------------------

def check_model_matches(model, cfg: ModelConfig, where) -> None:
    """Refuse a ``seqae.json`` whose model section does not describe ``model.keras`` (edited by hand):
    the graphs would be exported, and served, under the wrong outputs and sizes."""
    if cfg.num_features is None:
        raise ModelDirError(f"{where}: model.num_features is missing; expected the feature count of the data")
    length = cfg.min_length + 1
    out = model({names.INPUT_VALUES: np.zeros((1, length, cfg.num_features), np.float32),
                 names.INPUT_LENGTHS: np.array([length], np.int32)}, training=False)
    found = sorted(out) if isinstance(out, dict) else []
    if found != sorted(cfg.output_names):
        raise ModelDirError(f"{where}: model.mode: expected a mode whose outputs are those of {names.MODEL_FILE} "
                            f"({', '.join(found)}), found {cfg.mode!r} ({', '.join(cfg.output_names)})")
    width = int(out[names.EMBEDDING].shape[-1])
    if width != cfg.embedding_dim:
        field_name = "model.latent_dim" if cfg.latent_dim is not None else "model.units"
        raise ModelDirError(f"{where}: {field_name}: expected {width} (the embedding width of {names.MODEL_FILE}), "
                            f"found {cfg.latent_dim if cfg.latent_dim is not None else cfg.units}")


@contextlib.contextmanager
def staging_folder(directory: Path) -> Iterator[Path]:
    """A hidden folder inside ``directory`` (same filesystem: its files are renamed into place),
    removed when the block ends, whatever happens."""
    staging = Path(tempfile.mkdtemp(prefix=".export-", suffix=names.TMP_SUFFIX, dir=directory))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(staging: Path, directory: Path, files: dict[str, Any]) -> None:
    """Move the staged files into ``directory``: the ONNX files and the reference first, ``seqae.json``
    (their checksums) last. A reader between the two sees new files with old checksums and refuses
    them (ChecksumError), never a silent mix. Variants the new export did not write are removed last."""
    for name in [*files, names.REFERENCE_FILE, names.NEIGHBOURS_REFERENCE_FILE]:
        if (staging / name).is_file():
            os.replace(staging / name, directory / name)
    os.replace(staging / names.METADATA_FILE, directory / names.METADATA_FILE)
    for variant in (names.SCORER_FP16_ONNX, names.SCORER_INT8_ONNX, names.NEIGHBOURS_ONNX):
        if variant not in files:
            (directory / variant).unlink(missing_ok=True)  # never leave a stale variant behind
    if names.NEIGHBOURS_ONNX not in files:
        (directory / names.NEIGHBOURS_REFERENCE_FILE).unlink(missing_ok=True)


def save_graphs(protos: dict[str, Any], props: dict[str, Any], staging: Path) -> dict[str, Path]:
    """Write each fp32 graph, its ``props`` set, into ``staging``; returns the paths by graph kind."""
    paths = {"encoder": staging / names.ENCODER_ONNX, "scorer": staging / names.SCORER_ONNX}
    for kind, proto in protos.items():
        _set_metadata(proto, {**props, "seqae.graph": kind, "seqae.precision": "fp32"})
        _save(proto, paths[kind])
    return paths


def _file_record(path: Path, precision: str, graph: str) -> dict[str, Any]:
    """A file's entry in ``seqae.json``'s ``export.files``."""
    return {"sha256": sha256_of(path), "precision": precision, "graph": graph}


def check_parity(trained, paths: dict[str, Path], values: np.ndarray, lengths: np.ndarray,
                 config: ExportConfig) -> ParityReport:
    """``validate_parity`` of the staged graphs against Keras, raising when any check failed.

    Raises:
        ParityError: the message lists every failure; ``.report`` holds the parity summary.
    """
    report = validate_parity(trained.model, trained.config, paths, values, lengths, tolerance=Tolerance.of(config))
    if report.failures:
        lines = "\n".join(c.line() for c in report.failures)
        error = ParityError(f"{trained.info.directory}: ONNX outputs differ from Keras beyond tolerance "
                            f"({len(report.failures)} of {len(report.checks)} checks); the served files are "
                            f"left as they were:\n{lines}")
        error.report = report.summary()  # type: ignore[attr-defined]
        raise error
    return report


def fp16_variant(scorer, props: dict[str, Any], staging: Path, fp32_path: Path, values: np.ndarray,
                 lengths: np.ndarray, config: ExportConfig, cfg: ModelConfig) -> tuple[Path | None, dict[str, Any]]:
    """Write ``scorer.fp16.onnx`` from the fp32 scorer if it passes its parity with fp32
    (``fp16_reference_parity``; also on the CUDA provider where one is usable, recorded as
    ``cuda``); returns its path (``None`` when it failed: no file is left) and the parity."""
    half = to_fp16(scorer)
    outputs = cfg.output_names
    parity = fp16_reference_parity(half, fp32_path, values, lengths, outputs, config, cfg.min_length)
    if parity["measured"] and not parity["passed"]:
        log.warning("%s: the fp16 scorer is not kept, its parity with fp32 is beyond tolerance: %s",
                    staging.parent, parity)
        return None, parity
    _set_metadata(half, {**props, "seqae.graph": "scorer", "seqae.precision": "fp16"})
    path = staging / names.SCORER_FP16_ONNX
    _save(half, path)
    cuda = fp16_parity(path, fp32_path, values, lengths, outputs)
    return path, {**parity, **({"cuda": cuda} if cuda["measured"] else {})}


def int8_variant(scorer, staging: Path, fp32_path: Path, values: np.ndarray, lengths: np.ndarray,
                 cfg: ModelConfig, config: ExportConfig) -> tuple[Path | None, dict[str, Any]]:
    """Quantize the fp32 scorer (``int8_candidates``, most first) until one passes its parity with
    fp32; returns its path (``None`` when none passed: no file is left) and the last parity."""
    path = staging / names.SCORER_INT8_ONNX
    parity: dict[str, Any] = {}
    for what, nodes in int8_candidates(scorer, cfg):
        to_int8(fp32_path, path, nodes)
        parity = {"quantized": what, **int8_parity(path, fp32_path, values, lengths, cfg.output_names, config)}
        if parity["passed"]:
            return path, parity
        log.info("int8 with %s: beyond tolerance (%s)", what, parity)
    path.unlink()
    log.warning("%s: the int8 scorer is not kept, its parity with fp32 is beyond tolerance: %s", staging.parent, parity)
    return None, parity


def write_variants(config: ExportConfig, scorer, props: dict[str, Any], staging: Path, fp32_path: Path,
                   values: np.ndarray, lengths: np.ndarray, cfg: ModelConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The variants ``config`` asks for: the fp16 scorer (``config.fp16``) and the int8 one
    (``config.int8``), each kept if its own parity passes. Returns the file records of those written and
    their parity records (``fp16_parity``, ``int8_parity``)."""
    files: dict[str, Any] = {}
    parity: dict[str, Any] = {}
    if config.fp16:
        fp16_path, parity["fp16_parity"] = fp16_variant(scorer, props, staging, fp32_path, values, lengths, config,
                                                        cfg)
        if fp16_path is not None:
            files[fp16_path.name] = _file_record(fp16_path, "fp16", "scorer")
    if config.int8:
        int8_path, parity["int8_parity"] = int8_variant(scorer, staging, fp32_path, values, lengths, cfg, config)
        if int8_path is not None:
            files[int8_path.name] = _file_record(int8_path, "int8", "scorer")
    return files, parity


def onnx_props(info: ModelInfo, opset: int) -> dict[str, Any]:
    """The metadata properties every ONNX file carries (``seqae.graph`` and ``seqae.precision`` are
    added per file)."""
    cfg, data_config = info.model, info.data
    return {
        "seqae.model_id": info.model_id, "seqae.model_version": str(info.model_version),
        "seqae.version": __version__, "seqae.feature_names": list(info.feature_names),
        "seqae.num_features": str(cfg.num_features), "seqae.min_length": str(data_config.min_length),
        "seqae.max_length": str(data_config.max_length), "seqae.opset": str(opset),
        "seqae.activation": cfg.activation, "seqae.mode": cfg.mode, "seqae.decoder": cfg.decoder,
        "seqae.horizon": str(cfg.horizon), "seqae.patch": str(cfg.patch_size), "seqae.error_units": "standardised",
    }


def export_record(info: ModelInfo, config: ExportConfig, protos: dict[str, Any], files: dict[str, Any],
                  report: ParityReport, variants: dict[str, Any]) -> dict[str, Any]:
    """The ``export`` section of ``seqae.json`` (the held-out reference is added once scored)."""
    cfg = info.model
    return {
        "opset": config.opset, "config": config.to_dict(), "files": files, "parity": report.summary(), "graph": {
            kind: dict(collections.Counter(n.op_type for n in proto.graph.node).most_common())
            for kind, proto in protos.items()},
        "inputs": {names.INPUT_VALUES: ["batch", "time", cfg.num_features], names.INPUT_LENGTHS: ["batch"]},
        "outputs": graph_outputs(cfg),
        "activation": cfg.activation, "contract_sha256": contract_sha256(info.metadata),
        **variants,
    }


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and measured: ``seqae.json``'s ``export`` section, its parts named.

    Attributes:
        model_dir: the model directory as given (a local path or a URI).
        files: each ONNX file's record by name (``sha256``, ``precision``, ``graph``).
        parity: the parity gate's summary against Keras (``passed``, ``rows``, ``checks``, ``worst``,
            ``failures``).
        reference: the held-out reference it scored (``rows``, ``source``, ``recon_error_median``).
        fp16_parity: the fp16 scorer's parity (``--fp16``; by the ONNX reference evaluator, and on CUDA as
            ``cuda`` where one is usable; the file is dropped when it fails), else None.
        int8_parity: the int8 scorer's parity (``--int8``), else None.
        record: the whole ``export`` section as written to ``seqae.json``.
    """

    model_dir: Path | str
    files: dict[str, dict[str, Any]]
    parity: dict[str, Any]
    reference: dict[str, Any]
    fp16_parity: dict[str, Any] | None
    int8_parity: dict[str, Any] | None
    record: dict[str, Any]

    @classmethod
    def of(cls, model_dir: Path | str, record: dict[str, Any]) -> ExportResult:
        return cls(model_dir, record["files"], record["parity"], record["reference"], record.get("fp16_parity"),
                   record.get("int8_parity"), record)


def export(model_dir: str | os.PathLike, config: ExportConfig = ExportConfig(), *,
           data: str | None = None) -> ExportResult:
    """Write ``encoder.onnx`` and ``scorer.onnx`` (and the variants asked for) into ``model_dir``.

    ``model_dir`` is a local folder or a URI (``s3://bucket/models/ecg``; credentials in it are
    refused). At a URI the directory is copied into a local temporary folder (tf2onnx and Keras need
    local files), exported there as below, and only when everything passed are the changed files
    uploaded, ``seqae.json`` last (``seqae.modelstore.staged_model_dir``).

    Inputs of both graphs: ``values`` float32 ``(batch, time, features)`` in raw units (normalisation
    is inside the graph) and ``lengths`` int32 ``(batch,)``. Outputs: ``embedding`` (encoder);
    ``embedding``, ``recon_error``, ``step_error`` and, for predicting modes, ``pred_error`` (scorer).

    Everything is written into a hidden staging folder first. The parity gate compares both files
    with Keras on real rows of ``data`` (default: the training data recorded in ``seqae.json``); only
    when it passes (and the held-out reference is scored) do the files replace the served ones, with
    ``seqae.json`` (each file's sha256, the parity report, ``contract_sha256``) last. A failed export
    leaves ``model_dir`` as it was, byte for byte. The fp16 and int8 files are kept only if they pass
    their own parity against the fp32 scorer (``fp16_variant``, ``int8_variant``); a failed variant
    is dropped with a warning and the export goes on.

    Raises:
        ParityError: any output differs beyond the tolerance; the message lists every failure and
            ``.report`` holds the parity summary.
        ModelDirError: ``seqae.json`` does not describe ``model.keras`` (outputs, embedding width).
        SeqaeError: the graph does not have the expected shape (fused LSTM ops only).
    """
    for module in ("tensorflow", "keras", "tf2onnx", "onnx"):  # before anything is downloaded or staged
        import_optional(module, "train", needed_for="seqae.export")
    with staged_model_dir(model_dir) as local:
        record = _export(local, config, data)
    return ExportResult.of(model_dir if isinstance(model_dir, str) else Path(model_dir), record)


def _export(model_dir: Path, config: ExportConfig, data: str | None) -> dict[str, Any]:
    from seqae.model import load_model

    # The sections recorded at a previous export may have been edited (a new data.max_length, say):
    # this export records them anew.
    trained = load_model(model_dir, verify_contract=False)
    info, cfg = trained.info, trained.config
    directory = info.directory
    data = data or info.metadata.get("training", {}).get("data")
    if not data:
        raise SeqaeError(f"{directory}: seqae.json records no training data; pass the rows for the parity gate "
                         "(--data)")
    check_model_matches(trained.model, cfg, directory / names.METADATA_FILE)
    props = onnx_props(info, config.opset)
    protos = convert(trained, config.opset)
    values, lengths = sample_rows(data, info.data, info.num_features, config.parity_rows)
    with staging_folder(directory) as staging:
        paths = save_graphs(protos, props, staging)
        files = {path.name: _file_record(path, "fp32", kind) for kind, path in paths.items()}
        report = check_parity(trained, paths, values, lengths, config)
        variant_files, variants = write_variants(config, protos["scorer"], props, staging, paths["scorer"], values,
                                                 lengths, cfg)
        files.update(variant_files)
        split = _training_split(info, data)
        bank_record = None
        if info.data.layout == "long" and info.data.window and config.neighbours:
            bank_path, bank_record = write_neighbours(staging, info, data, split, props, config, values, lengths)
            if bank_path is not None:
                files[bank_path.name] = _file_record(bank_path, "fp32", "neighbours")
        export_meta = export_record(info, config, protos, files, report, variants)
        if bank_record is not None:
            export_meta["neighbours"] = bank_record
        export_meta["reference"] = _reference(staging, info, data, split)  # scored by the staged scorer.onnx
        write_metadata(staging, {**info.metadata, "export": export_meta})
        _commit(staging, directory, files)
    return export_meta
