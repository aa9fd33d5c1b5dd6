import os

import numpy as np
import pytest

from seqae.config import ModelConfig, SessionOptions, TrainConfig
from seqae.errors import ConfigError, DeviceError
from seqae.infer.runtime import CPU, CUDA, cuda_usable, heavy_nodes_off, physical_cores
from seqae.infer.session import NullScorer, ScorerSession

RECONSTRUCT = ["embedding", "recon_error", "step_error"]
COMPOSITE = RECONSTRUCT + ["pred_error"]


@pytest.fixture(scope="module")
def scorer_dir(tmp_path_factory, sine_dir):
    """A tiny exported reconstruct model (4 units), trained once for this module."""
    from seqae.export import export
    from seqae.train import train

    path = tmp_path_factory.mktemp("scorer")
    train(str(sine_dir), path, model_config=ModelConfig(units=4), train_config=TrainConfig(max_epochs=1))
    export(path)
    return path


def batch(rows=3, steps=7, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, steps, 1)).astype(np.float32)
    lengths = np.array([steps, 2, 5][:rows], np.int32)
    for i, n in enumerate(lengths):
        values[i, n:] = 0
    return values, lengths


@pytest.mark.parametrize("output_names", [RECONSTRUCT, COMPOSITE, ["embedding"]])
def test_null_scorer_shapes(output_names):
    values, lengths = batch()
    out = NullScorer(output_names, embedding_dim=6).run(values, lengths)
    assert list(out) == output_names
    shapes = {"embedding": (3, 6), "recon_error": (3,), "pred_error": (3,), "step_error": (3, 7)}
    for name, array in out.items():
        assert array.shape == shapes[name] and array.dtype == np.float32
        assert array.std() > 0 and not array.flags.writeable  # not zeros, which encode for nothing
    assert NullScorer(output_names, 6).provider == "null"


def test_null_scorer_grows_to_the_largest_call():
    scorer = NullScorer(["embedding", "recon_error"], embedding_dim=3)
    small = scorer.run(np.zeros((2, 4, 1), np.float32), np.full(2, 4, np.int32))
    big = scorer.run(np.zeros((50, 4, 1), np.float32), np.full(50, 4, np.int32))
    assert big["embedding"].shape == (50, 3) and big["recon_error"].shape == (50,)
    assert len(np.unique(big["embedding"])) == 150
    assert small["embedding"].shape == (2, 3)  # an earlier call's arrays stay valid


@pytest.mark.parametrize("kwargs, message", [
    ({"device": "gpu"}, "device: expected 'auto', 'cuda' or 'cpu', got 'gpu'"),
    ({"threads": 0}, "threads: expected a positive integer, got 0"),
    ({"threads": True}, "threads: expected a positive integer, got True"),
    ({"device": "cpu", "fp16": True}, "fp16: the fp16 scorer runs on CUDA only (an fp16 LSTM crashed onnxruntime's "
                                      "CPU provider); drop --fp16 or use --device cuda"),
])
def test_session_options_validation(kwargs, message):
    with pytest.raises(ConfigError) as err:
        SessionOptions(**kwargs)
    assert str(err.value) == message


def test_session_options_accepted():
    assert SessionOptions(device="cuda", fp16=True, threads=2).threads == 2
    assert SessionOptions().device == "auto" and SessionOptions().threads is None


def node(op, provider, name="n", cat="Node"):
    return {"cat": cat, "name": f"{name}_kernel_time", "args": {"op_name": op, "provider": provider}}


def test_heavy_nodes_off():
    events = [
        node("LSTM", CPU, "lstm_1"),
        node("LSTM", CPU, "lstm_1"),  # reported once
        node("MatMul", CUDA, "mm"),  # on the asked provider
        node("Gemm", CPU, "dense"),
        node("Relu", CPU, "relu"),  # not heavy
        node("Loop", CPU, "loop", cat="Session"),  # not a node event
        {"cat": "Node", "name": "x", "args": {"op_name": "LSTM"}},  # no provider recorded
        {"cat": "Node", "name": "y"},
    ]
    assert heavy_nodes_off(events, CUDA) == ["Gemm dense on CPUExecutionProvider",
                                             "LSTM lstm_1 on CPUExecutionProvider"]
    assert heavy_nodes_off(events, CPU) == ["MatMul mm on CUDAExecutionProvider"]
    assert heavy_nodes_off([], CUDA) == []


def test_physical_cores():
    cores = physical_cores()
    assert isinstance(cores, int) and 1 <= cores <= (os.cpu_count() or 1)


@pytest.mark.slow
def test_scorer_session_on_the_cpu(scorer_dir):
    session = ScorerSession(scorer_dir, SessionOptions(device="cpu", threads=1))
    assert session.provider == CPU == "CPUExecutionProvider"
    assert session.output_names == RECONSTRUCT
    assert sorted(session.input_names) == ["lengths", "values"]
    assert str(session.path) == str(scorer_dir / "scorer.onnx")
    values, lengths = batch()
    out = session.run(values, lengths)
    assert list(out) == RECONSTRUCT
    assert {k: v.shape for k, v in out.items()} == {"embedding": (3, 4), "recon_error": (3,), "step_error": (3, 7)}
    null = NullScorer(session.output_names, 4).run(values, lengths)
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {k: (v.shape, v.dtype) for k, v in null.items()}
    assert all(np.isfinite(v).all() for v in out.values())
    assert (out["recon_error"] > 0).all()


@pytest.mark.slow
def test_scorer_session_ignores_padding_and_answers_chosen_outputs(scorer_dir):
    session = ScorerSession(scorer_dir, SessionOptions(device="cpu"), outputs=["embedding", "recon_error"])
    assert session.output_names == ["embedding", "recon_error"]
    values, lengths = batch()
    noisy = values.copy()
    for i, n in enumerate(lengths):
        noisy[i, n:] = 99.0
    clean, dirty = session.run(values, lengths), session.run(noisy, lengths)
    assert list(clean) == ["embedding", "recon_error"]
    np.testing.assert_allclose(clean["embedding"], dirty["embedding"], atol=1e-6)
    np.testing.assert_allclose(clean["recon_error"], dirty["recon_error"], rtol=1e-5)
    one = session.run(values[1:2, :2], lengths[1:2])  # the same row alone, padding cut off
    np.testing.assert_allclose(one["embedding"], clean["embedding"][1:2], atol=1e-5)


@pytest.mark.slow
def test_scorer_session_refuses_cuda_without_a_gpu(scorer_dir):
    if cuda_usable(str(scorer_dir / "scorer.onnx")):
        pytest.skip("the CUDA provider works on this machine")
    with pytest.raises(DeviceError, match=r"^--device cuda: onnxruntime's CUDA provider is not usable here \("
                                          r"available: .*CPUExecutionProvider.*; use --device cpu or --device auto$"):
        ScorerSession(scorer_dir, SessionOptions(device="cuda"))
    with pytest.raises(DeviceError) as err:
        ScorerSession(scorer_dir, SessionOptions(device="auto", fp16=True))
    assert str(err.value) == "--fp16: needs the CUDA provider, which is not usable here; drop --fp16"
    assert ScorerSession(scorer_dir, SessionOptions(device="auto")).provider == CPU


def tampered(path):
    """The same graph with another doc string: a valid scorer whose bytes differ."""
    import onnx

    model = onnx.load(str(path))
    model.doc_string = "swapped in after the check"
    path.write_bytes(model.SerializeToString())


@pytest.fixture()
def own_scorer_dir(scorer_dir, tmp_path):
    import shutil

    return shutil.copytree(scorer_dir, tmp_path / "model")


@pytest.mark.slow
def test_the_session_is_built_from_the_bytes_that_were_hashed(own_scorer_dir, monkeypatch):
    """A file swapped between the hash and the session build is never the one that runs."""
    import hashlib

    import onnxruntime as ort

    from seqae.config import EmbedConfig
    from seqae.infer import InferenceModel

    scorer = own_scorer_dir / "scorer.onnx"
    original = hashlib.sha256(scorer.read_bytes()).hexdigest()
    built_from = []
    real = ort.InferenceSession

    def swap_then_build(source, *args, **kwargs):
        tampered(scorer)  # after every check, just before onnxruntime reads the graph
        built_from.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", swap_then_build)
    model = InferenceModel.open(own_scorer_dir, EmbedConfig(device="cpu"))
    assert built_from and all(isinstance(s, bytes) and hashlib.sha256(s).hexdigest() == original for s in built_from)
    assert model.identity.onnx_sha256 == original != hashlib.sha256(scorer.read_bytes()).hexdigest()


@pytest.mark.slow
def test_a_file_swapped_after_the_artifacts_check_is_refused(own_scorer_dir, monkeypatch):
    from seqae.config import EmbedConfig
    from seqae.errors import ChecksumError
    from seqae.infer import InferenceModel, model
    from seqae.infer.artifacts import ModelArtifacts

    real = ModelArtifacts.open.__func__

    def open_then_swap(cls, *args, **kwargs):
        artifacts = real(cls, *args, **kwargs)
        tampered(own_scorer_dir / "scorer.onnx")
        return artifacts

    monkeypatch.setattr(model.ModelArtifacts, "open", classmethod(open_then_swap))
    with pytest.raises(ChecksumError, match=rf"^{own_scorer_dir}/scorer.onnx: sha256 [0-9a-f]{{16}}\.\.\. does not match "
                                            r"[0-9a-f]{16}\.\.\. recorded in seqae.json; the file changed after export"):
        InferenceModel.open(own_scorer_dir, EmbedConfig(device="cpu"))


@pytest.mark.slow
def test_a_session_checks_the_sha256_it_is_given(own_scorer_dir):
    import hashlib

    from seqae.errors import ChecksumError

    right = hashlib.sha256((own_scorer_dir / "scorer.onnx").read_bytes()).hexdigest()
    assert ScorerSession(own_scorer_dir, SessionOptions(device="cpu"), sha256={"scorer.onnx": right}).provider == CPU
    with pytest.raises(ChecksumError, match=r"/scorer.onnx: sha256 [0-9a-f]{16}\.\.\. does not match 0000000000000000"):
        ScorerSession(own_scorer_dir, SessionOptions(device="cpu"), sha256={"scorer.onnx": "0" * 64})
