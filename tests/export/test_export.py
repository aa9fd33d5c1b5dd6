import collections
import importlib
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae import names
from seqae.config import ExportConfig
from seqae.errors import ChecksumError, ModelDirError, ParityError
from seqae.export import Tolerance, check_graph, export, validate_parity
from seqae.infer.artifacts import ModelArtifacts
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
    {"mode": "reconstruct", "patch": 3},
    {"mode": "reconstruct", "patch": 4, "decoder": "state", "num_layers": 2, "reverse_target": False},
]
PATCHED = [i for i, family in enumerate(FAMILY) if family.get("patch", 1) > 1]


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
    assert meta.parity["passed"] and meta.parity["failures"] == []
    assert meta.parity["checks"] == 2 * 2 * (1 + len(cfg.output_names))  # cases x batch sizes x outputs
    assert meta.record == json.loads((path / names.METADATA_FILE).read_text())["export"]  # what seqae.json holds
    assert meta.reference["rows"] > 0 and set(meta.files) >= {names.ENCODER_ONNX, names.SCORER_ONNX}
    assert meta.fp16_parity is None and meta.int8_parity is None
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
        assert props["seqae.patch"] == str(cfg.patch_size)  # a reader of the file alone knows the time patches
        assert props["seqae.model_id"] == json.loads((path / names.METADATA_FILE).read_text())["model_id"]
    scorer = ort.InferenceSession(str(path / names.SCORER_ONNX), providers=["CPUExecutionProvider"])
    assert sorted(o.name for o in scorer.get_outputs()) == sorted(cfg.output_names)


@pytest.mark.parametrize("index", PATCHED)
def test_patched_members_agree_with_keras_whatever_the_time_axis_holds(exported, index):
    """Every remainder of the time axis by the patch (the last patch partly padded or not), rows of
    every length below it, and padding that holds garbage: ONNX gives what Keras gives, and the
    padding changes nothing."""
    path, _ = exported[index]
    trained = load_model(path)
    rng = np.random.default_rng(1)
    tolerance = Tolerance.of(ExportConfig())
    for time in range(9, 9 + trained.config.patch_size + 1):
        values = rng.normal(size=(12, time, 1)).astype(np.float32)
        lengths = np.array([time, *rng.integers(1, time + 1, size=11)], np.int32)
        garbage = values.copy()
        garbage[np.arange(time)[None, :] >= lengths[:, None]] = 7.0
        want = trained.predict(values, lengths)
        for file in (names.ENCODER_ONNX, names.SCORER_ONNX):
            session = ort.InferenceSession(str(path / file), providers=["CPUExecutionProvider"])
            for case in (values, garbage):
                got = dict(zip([o.name for o in session.get_outputs()],
                               session.run(None, {names.INPUT_VALUES: case, names.INPUT_LENGTHS: lengths})))
                for name, array in got.items():  # the parity gate's own bounds
                    over = np.abs(array - want[name]) - tolerance.allowed(name, want[name])
                    assert (over <= 0).all(), f"{file} {name} time {time}: {over.max():.3g} over the gate's bound"


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


def snapshot(path):
    """Every file under ``path`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_a_failed_export_leaves_the_model_directory_byte_for_byte_as_it_was(exported, sine_dir, monkeypatch):
    path, _ = exported[2]
    before = snapshot(path)
    with pytest.raises(ParityError, match=r"ONNX outputs differ from Keras beyond tolerance \(\d+ of 20 checks\); the "
                                          r"served files are left as they were:\nFAIL") as caught:
        export(path, ExportConfig(embedding_atol=0.0, error_rtol=0.0, error_atol_floor=0.0))
    assert caught.value.report["passed"] is False and caught.value.report["failures"]  # the report travels with it
    assert snapshot(path) == before
    # A failure after the gate (here: scoring the held-out reference) replaces nothing either.
    def broken(*args):
        raise OSError("disk full")

    # The module, not the function of the same name that the package exports.
    monkeypatch.setattr(importlib.import_module("seqae.export"), "_reference", broken)
    with pytest.raises(OSError, match="disk full"):
        export(path, ExportConfig(fp16=True, int8=True))
    assert snapshot(path) == before
    ModelArtifacts.open(path, (names.ENCODER_ONNX, names.SCORER_ONNX))  # the served files are still the good ones
    monkeypatch.undo()
    export(path)  # and a normal export passes again
    ModelArtifacts.open(path, (names.ENCODER_ONNX, names.SCORER_ONNX))
    assert not [p for p in path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_model_section_that_does_not_describe_model_keras_is_refused(exported, tmp_path):
    path, _ = exported[0]  # units 4, no bottleneck
    copy = tmp_path / "m"
    shutil.copytree(path, copy)
    meta = json.loads((copy / names.METADATA_FILE).read_text())
    meta["model"]["latent_dim"] = 3
    (copy / names.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match=r"seqae\.json: model, data, feature_names: expected the sections the ONNX "
                                            r"files were exported from"):
        ModelArtifacts.open(copy)  # what embed reads: the edit after export is caught
    with pytest.raises(ModelDirError, match=r"seqae\.json: model\.latent_dim: expected 4 \(the embedding width of "
                                            r"model\.keras\), found 3$"):
        export(copy)


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


@pytest.mark.parametrize("index", range(len(FAMILY)), ids=lambda i: "-".join(map(str, FAMILY[i].values())))
def test_fp16_graph_is_valid_and_keeps_float32_io(exported, index):
    """Every member: patched models (their step counts go through tf2onnx's float Max, which the fp16
    converter keeps in float32: ``seqae export --fp16`` failed on every default model with a patch)
    and conditioned decoders (a Loop's body has casts of its own)."""
    from seqae.export import to_fp16

    path, _ = exported[index]
    half = to_fp16(onnx.load(path / names.SCORER_ONNX))  # raises if onnx.checker rejects it
    assert {i.type.tensor_type.elem_type for i in half.graph.input} == {onnx.TensorProto.FLOAT, onnx.TensorProto.INT32}
    assert {o.type.tensor_type.elem_type for o in half.graph.output} == {onnx.TensorProto.FLOAT}
    lstm_weights = [i for i in half.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert lstm_weights, "weights should be float16"


@pytest.mark.parametrize("index", range(len(FAMILY)), ids=lambda i: "-".join(map(str, FAMILY[i].values())))
def test_fp16_scorer_is_kept_when_its_reference_parity_passes(exported, tmp_path, index):
    """Measured here, without a GPU: the fp16 graph run by ONNX's reference evaluator against the fp32
    scorer, every output. Before the islands were kept in float32, a patched model's fp16 scorer sliced
    no rows. The evaluator cannot run a conditioned decoder's Loop, in fp32 either: not measured, kept."""
    model = tmp_path / "m"
    shutil.copytree(exported[index][0], model)
    meta = export(model, ExportConfig(fp16=True))
    parity = meta.fp16_parity
    if FAMILY[index].get("decoder") == "conditioned":
        assert parity["measured"] is False and "cannot run this graph in fp32 either" in parity["reason"]
    else:
        assert parity["measured"] and parity["passed"], parity
        assert parity["rows"] == 64 and parity["embedding"]["max_abs"] < 1e-2
        cfg = ModelConfig.from_dict(json.loads((model / names.METADATA_FILE).read_text())["model"])
        assert set(cfg.output_names) <= set(parity)  # every output compared, per-step errors included
    assert meta.files["scorer.fp16.onnx"]["precision"] == "fp16" and (model / names.SCORER_FP16_ONNX).exists()


def test_fp16_scorer_holds_on_rows_longer_than_float16_counts(tmp_path):
    """Float16 holds integers exactly only to 2048: rows of 2100 steps, unpatched and patched, keep
    their last steps (the masks' time index and length stay float32). Before, the patched model's
    embeddings moved by 0.2 and the unpatched one's last step errors were zeros."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(2000, 2101, size=40)
    rows = [np.sin(np.arange(n) * 0.3 + rng.uniform(0, 6)).astype(np.float32).tolist() for n in lengths]
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"id": np.arange(len(rows), dtype=np.int64), "values": pa.array(rows, pa.list_(pa.float32()))}),
                   data / "part-0.parquet")
    for patch in (1, None):  # None: the default, 33 steps per LSTM step here
        model = tmp_path / f"m{patch}"
        train(str(data), model, model_config=ModelConfig(units=4, patch=patch),
              train_config=TrainConfig(batch_size=32, max_epochs=1))
        meta = export(model, ExportConfig(fp16=True))
        assert meta.fp16_parity["passed"], meta.fp16_parity
        assert meta.fp16_parity["step_error"]["max_rel"] < 2e-2 and (model / names.SCORER_FP16_ONNX).exists()


def test_a_broken_fp16_scorer_is_not_kept(exported, tmp_path, monkeypatch, sine_dir):
    """The gate refuses a graph whose outputs are wrong (here: its LSTM weights scaled) and one the
    reference evaluator cannot run; embed then says why the file is missing."""
    from seqae.config import EmbedConfig
    from seqae.infer import embed

    module = importlib.import_module("seqae.export")
    to_fp16 = module.to_fp16

    def scaled(proto):
        half = to_fp16(proto)
        lstm_inputs = {i for n in half.graph.node if n.op_type == "LSTM" for i in n.input[1:3]}
        for init in half.graph.initializer:
            if init.name in lstm_inputs:
                values = onnx.numpy_helper.to_array(init) * 3
                init.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float16), init.name))
        return half

    model = tmp_path / "m"
    shutil.copytree(exported[PATCHED[0]][0], model)
    monkeypatch.setattr(module, "to_fp16", scaled)
    meta = export(model, ExportConfig(fp16=True))
    assert meta.fp16_parity["passed"] is False and meta.fp16_parity["embedding"]["max_abs"] > 1e-2
    assert "scorer.fp16.onnx" not in meta.files and not (model / names.SCORER_FP16_ONNX).exists()
    with pytest.raises(ModelDirError, match=r"scorer\.fp16\.onnx: missing; .*export dropped it: its parity"):
        embed(model, str(sine_dir), tmp_path / "out", EmbedConfig(device="cuda", fp16=True))

    def unrunnable(proto):
        half = to_fp16(proto)
        next(n for n in half.graph.node if n.op_type == "LSTM").op_type = "NoSuchOp"
        return half

    monkeypatch.setattr(module, "to_fp16", unrunnable)
    meta = export(model, ExportConfig(fp16=True))
    assert meta.fp16_parity["passed"] is False and "NoSuchOp" in meta.fp16_parity["error"]
    assert not (model / names.SCORER_FP16_ONNX).exists()


GENEROUS = {"int8_embedding_atol": 2.0, "int8_error_rtol": 1e9, "int8_error_rtol_p99": 1e9}  # any finite output
TINY = {"int8_embedding_atol": 0.0, "int8_error_rtol": 0.0, "int8_error_rtol_p99": 0.0}  # bit-identical only


def test_int8_scorer_is_written_with_its_own_parity_and_used_on_request(exported, tmp_path, sine_dir):
    """The int8 gate both ways on a fixed model, whatever its weights: a tolerance every finite output
    meets (a tanh embedding moves by less than 2) keeps the file, one that only identical outputs meet
    refuses it (quantized weights change the outputs)."""
    from seqae.config import EmbedConfig
    from seqae.infer import embed

    model = tmp_path / "m"
    shutil.copytree(exported[0][0], model)  # reconstruct, units 4, no bottleneck: embedding in (-1, 1)
    meta = export(model, ExportConfig(int8=True, **GENEROUS))
    parity = meta.int8_parity
    assert parity["passed"] and parity["quantized"] == "all LSTM and MatMul weights"
    assert parity["tolerance"] == {"embedding_atol": 2.0, "error_rtol_median": 1e9, "error_rtol_p99": 1e9}
    assert meta.files["scorer.int8.onnx"]["precision"] == "int8"
    ops = collections.Counter(n.op_type for n in onnx.load(model / names.SCORER_INT8_ONNX).graph.node)
    assert ops["DynamicQuantizeLSTM"] >= 1  # the LSTM weights really are int8
    full = embed(model, str(sine_dir), tmp_path / "fp32", EmbedConfig(device="cpu"))
    quantized = embed(model, str(sine_dir), tmp_path / "int8", EmbedConfig(int8=True))
    assert quantized.provider == "CPUExecutionProvider" and quantized.totals == full.totals
    a = pq.read_table(tmp_path / "fp32" / names.EMBEDDINGS_DIR / "part-0.parquet").column("recon_error").to_numpy()
    b = pq.read_table(tmp_path / "int8" / names.EMBEDDINGS_DIR / "part-0.parquet").column("recon_error").to_numpy()
    assert np.isfinite(b).all() and not np.array_equal(a, b)  # the int8 scorer ran
    entry = json.loads((tmp_path / "int8" / names.CONTROL_DIR / names.ENTRIES_DIR / "part-0.parquet.json").read_text())
    assert entry["onnx_file"] == "scorer.int8.onnx"

    meta = export(model, ExportConfig(int8=True, **TINY))  # both candidates tried, neither kept
    assert meta.int8_parity["passed"] is False and meta.int8_parity["quantized"] == "the encoder's LSTM weights"
    assert "scorer.int8.onnx" not in meta.files and not (model / names.SCORER_INT8_ONNX).exists()
    with pytest.raises(ModelDirError, match=r"scorer\.int8\.onnx: missing; .*export dropped it"):
        embed(model, str(sine_dir), tmp_path / "int8b", EmbedConfig(int8=True))
    export(model)  # without --int8: asking for it says how to get it
    with pytest.raises(ModelDirError, match="--int8 needs it: run `seqae export .* --int8`"):
        embed(model, str(sine_dir), tmp_path / "int8c", EmbedConfig(int8=True))
