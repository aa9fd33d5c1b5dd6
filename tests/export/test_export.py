import collections
import json

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest

from seqae import names
from seqae.config import ExportConfig
from seqae.errors import ChecksumError, ModelDirError, ParityError
from seqae.export import check_graph, export, validate_parity
from seqae.infer import ModelArtifacts
from seqae.model import ModelConfig, load_model
from seqae.train import TrainConfig, train

pytestmark = pytest.mark.slow  # builds and trains Keras models

FAMILY = [
    {"mode": "reconstruct"},
    {"mode": "reconstruct", "decoder": "conditioned", "reverse_target": False},
    {"mode": "predict", "horizon": 2},
    {"mode": "predict", "horizon": 2, "decoder": "conditioned"},
    {"mode": "composite", "horizon": 2, "num_layers": 2, "latent_dim": 3},
    {"mode": "composite", "horizon": 2, "decoder": "conditioned"},
    {"mode": "reconstruct", "decoder": "state"},
    {"mode": "composite", "horizon": 2, "decoder": "state", "num_layers": 2},
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sine_dir):
    """One trained and exported model directory per family member (trained one epoch: parity, not quality)."""
    out = {}
    for i, family in enumerate(FAMILY):
        path = tmp_path_factory.mktemp(f"m{i}")
        train(str(sine_dir), path, model_config=ModelConfig(units=4, **family),
              train_config=TrainConfig(batch_size=32, max_epochs=1))
        out[i] = (path, export(path))
    return out


@pytest.mark.parametrize("index", range(len(FAMILY)), ids=lambda i: "-".join(map(str, FAMILY[i].values())))
def test_every_member_exports_with_parity_and_fused_lstms(exported, index):
    path, meta = exported[index]
    cfg = ModelConfig.from_dict(json.loads((path / names.METADATA_FILE).read_text())["model"])
    assert meta["parity"]["passed"] and meta["parity"]["failures"] == []
    assert meta["parity"]["checks"] == 2 * 2 * (1 + len(cfg.output_names))  # cases x batch sizes x outputs
    for file, graph in ((names.ENCODER_ONNX, "encoder"), (names.SCORER_ONNX, "scorer")):
        proto = onnx.load(path / file)
        ops = collections.Counter(n.op_type for n in proto.graph.node)
        assert check_graph(proto, cfg, graph) == []
        assert ops["Scan"] == 0
        if graph == "encoder" or cfg.decoder != "conditioned":
            assert ops["Loop"] == 0
        assert [i.name for i in proto.graph.input] == [names.INPUT_VALUES, names.INPUT_LENGTHS]
        dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and isinstance(dims[1], str) and dims[2] == cfg.num_features
        props = {p.key: p.value for p in proto.metadata_props}
        assert props["seqae.activation"] == "tanh" and props["seqae.opset"] == "17"
        assert props["seqae.model_id"] == json.loads((path / names.METADATA_FILE).read_text())["model_id"]
    scorer = ort.InferenceSession(str(path / names.SCORER_ONNX), providers=["CPUExecutionProvider"])
    assert sorted(o.name for o in scorer.get_outputs()) == sorted(cfg.output_names)


def test_graph_check_catches_loops_and_missing_fusion():
    cfg = ModelConfig(num_features=1, units=4)
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Loop", [], []), onnx.helper.make_node("Scan", [], [])], "g", [], []))
    assert check_graph(model, cfg, "encoder") == [
        "encoder: expected 1 fused LSTM op(s), found 0",
        "encoder: expected no Scan, found 1",
        "encoder: expected 0 Loop op(s), found 1",
    ]


def test_parity_gate_lists_every_mismatch_of_a_perturbed_model(exported, tmp_path):
    path, _ = exported[0]
    trained = load_model(path)
    proto = onnx.load(path / names.SCORER_ONNX)
    encoder_lstm = next(n for n in proto.graph.node if n.op_type == "LSTM")  # nodes are in topological order
    for init in proto.graph.initializer:  # nudge its recurrent weights
        if init.name == encoder_lstm.input[2]:
            array = onnx.numpy_helper.to_array(init) + np.float32(0.05)
            init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
    onnx.save(proto, tmp_path / "scorer.onnx")
    rng = np.random.default_rng(0)
    values = rng.normal(size=(40, 12, 1)).astype(np.float32)
    lengths = rng.integers(3, 13, size=40).astype(np.int32)
    report = validate_parity(trained.model, trained.config, {"scorer": tmp_path / "scorer.onnx"}, values, lengths)
    failed = {(c.output, c.case, c.batch_size) for c in report.failures}
    assert {(o, case, b) for o in ("embedding", "recon_error", "step_error")
            for case in ("real rows", "random lengths") for b in (1, 64)} == failed
    assert all("max abs" in c.line() and c.line().startswith("FAIL scorer.onnx") for c in report.failures)


def test_export_raises_parity_error_when_tolerance_is_impossible(exported, sine_dir):
    path, _ = exported[2]
    with pytest.raises(ParityError, match=r"ONNX outputs differ from Keras beyond tolerance \(\d+ of 20 checks\):\nFAIL"):
        export(path, ExportConfig(embedding_atol=0.0, error_rtol=0.0, error_atol_floor=0.0))
    meta = json.loads((path / names.METADATA_FILE).read_text())
    assert meta["export"]["parity"]["passed"] is False  # the report is kept for whoever looks next
    export(path)  # and a normal export passes again


def test_tampered_file_is_refused_by_checksum(exported):
    path, _ = exported[1]
    ModelArtifacts.open(path, (names.ENCODER_ONNX, names.SCORER_ONNX))
    data = bytearray((path / names.ENCODER_ONNX).read_bytes())
    original = bytes(data)
    data[-1] ^= 0xFF
    (path / names.ENCODER_ONNX).write_bytes(bytes(data))
    try:
        with pytest.raises(ChecksumError, match=r"encoder.onnx: sha256 [0-9a-f]{16}\.\.\. does not match"):
            ModelArtifacts.open(path, (names.ENCODER_ONNX,))
    finally:
        (path / names.ENCODER_ONNX).write_bytes(original)


def test_unexported_dir_is_refused(tmp_path, sine_dir):
    train(str(sine_dir), tmp_path, model_config=ModelConfig(units=2), train_config=TrainConfig(max_epochs=1))
    with pytest.raises(ModelDirError, match=r"not exported; run `seqae export"):
        ModelArtifacts.open(tmp_path)


def test_fp16_graph_is_valid_and_keeps_float32_io(exported):
    from seqae.export import to_fp16

    path, _ = exported[4]
    half = to_fp16(onnx.load(path / names.SCORER_ONNX))  # raises if onnx.checker rejects it
    assert {i.type.tensor_type.elem_type for i in half.graph.input} == {onnx.TensorProto.FLOAT, onnx.TensorProto.INT32}
    assert {o.type.tensor_type.elem_type for o in half.graph.output} == {onnx.TensorProto.FLOAT}
    lstm_weights = [i for i in half.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert lstm_weights, "weights should be float16"


def test_int8_scorer_is_written_with_its_own_parity_and_used_on_request(tmp_path, sine_dir):
    from seqae.config import EmbedConfig
    from seqae.errors import ModelDirError
    from seqae.infer import embed

    train(str(sine_dir), tmp_path / "m", model_config=ModelConfig(units=8),
          train_config=TrainConfig(batch_size=32, max_epochs=2))
    meta = export(tmp_path / "m", ExportConfig(int8=True))
    parity = meta["int8_parity"]
    assert parity["passed"] and parity["embedding"]["max_abs"] <= 2e-2 and parity["recon_error"]["median_rel"] <= 1e-2
    assert meta["files"]["scorer.int8.onnx"]["precision"] == "int8"
    ops = collections.Counter(n.op_type for n in onnx.load(tmp_path / "m" / names.SCORER_INT8_ONNX).graph.node)
    assert ops["DynamicQuantizeLSTM"] >= 1  # the LSTM weights really are int8
    full = embed(tmp_path / "m", str(sine_dir), tmp_path / "fp32", EmbedConfig(device="cpu"))
    quantized = embed(tmp_path / "m", str(sine_dir), tmp_path / "int8", EmbedConfig(int8=True))
    assert quantized.provider == "CPUExecutionProvider" and quantized.totals == full.totals
    a = pq.read_table(tmp_path / "fp32" / "part-0.parquet").column("recon_error").to_numpy()
    b = pq.read_table(tmp_path / "int8" / "part-0.parquet").column("recon_error").to_numpy()
    assert np.median(np.abs(a - b) / a) < 1e-2 and not np.array_equal(a, b)
    entry = json.loads((tmp_path / "int8" / "_manifest" / "part-0.parquet.json").read_text())
    assert entry["onnx_file"] == "scorer.int8.onnx"
    export(tmp_path / "m")  # without --int8: the variant is removed, and asking for it says how to get it
    with pytest.raises(ModelDirError, match="--int8 needs it: run `seqae export .* --int8`"):
        embed(tmp_path / "m", str(sine_dir), tmp_path / "int8b", EmbedConfig(int8=True))
