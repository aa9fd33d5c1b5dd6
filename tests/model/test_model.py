import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from seqae.errors import ConfigError
from seqae.model import AutoencoderHead, ModelConfig, build_autoencoder, compile_autoencoder, encoder_of, training_loss

pytestmark = pytest.mark.slow  # builds and trains Keras models

FAMILY = [
    dict(mode=mode, horizon=0 if mode == "reconstruct" else 2, decoder=decoder, reverse_target=reverse)
    for mode, decoder, reverse in itertools.product(
        ("reconstruct", "predict", "composite"), ("unconditioned", "state", "conditioned"), (True, False))
] + [  # patches of 3 steps over a time axis of 8: the last patch is partly padded
    dict(mode="reconstruct", horizon=0, decoder=decoder, reverse_target=reverse, patch=3)
    for decoder, reverse in (("unconditioned", True), ("state", False), ("unconditioned", False))
]
PATCHED = [family for family in FAMILY if "patch" in family]


def batch(n=32, time=8, features=2, seed=0, min_length=3):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, time + 1, size=n).astype(np.int32)
    t = np.arange(time)[None, :, None] + rng.uniform(0, 6, size=(n, 1, 1))
    values = np.sin(t * np.array([0.5, 0.9][:features])).astype(np.float32)
    values[np.arange(time)[None, :] >= lengths[:, None]] = 0.0
    return values, lengths


@pytest.mark.parametrize("family", FAMILY, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_every_member_builds_trains_and_lowers_its_loss(family):
    keras.utils.set_random_seed(0)
    cfg = ModelConfig(num_features=2, units=8, latent_dim=4, num_layers=2, learning_rate=1e-2, **family)
    model = compile_autoencoder(build_autoencoder(cfg), cfg)
    values, lengths = batch()
    inputs = {"values": values, "lengths": lengths}
    targets = {k: np.zeros(len(values), np.float32) for k in training_loss(cfg)[0]}
    before = model.evaluate(inputs, targets, verbose=0, return_dict=True)["loss"]
    model.fit(inputs, targets, epochs=15, batch_size=16, verbose=0)
    after = model.evaluate(inputs, targets, verbose=0, return_dict=True)["loss"]
    assert after < 0.8 * before
    out = model.predict(inputs, verbose=0)
    assert sorted(out) == sorted(cfg.output_names)
    assert out["embedding"].shape == (32, 4) and out["step_error"].shape == (32, 8)


@pytest.mark.parametrize("family", FAMILY[:18:3] + PATCHED, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_padding_changes_neither_embedding_nor_errors(family):
    cfg = ModelConfig(num_features=2, units=6, **family)
    model = build_autoencoder(cfg, mean=[0.5, -1.0], std=[2.0, 3.0])
    values, lengths = batch(seed=1)
    garbage = np.random.default_rng(2).normal(0, 100, size=(32, 5, 2)).astype(np.float32)
    a = model.predict({"values": values, "lengths": lengths}, verbose=0)
    padded = values.copy()
    for i, n in enumerate(lengths):
        padded[i, n:] = 50.0
    b = model.predict({"values": np.concatenate([padded, garbage], axis=1), "lengths": lengths}, verbose=0)
    for name in cfg.output_names:
        got = b[name][:, :8] if name == "step_error" else b[name]
        np.testing.assert_allclose(got, a[name], atol=1e-5, err_msg=name)
    assert (b["step_error"][:, 8:] == 0).all()
    assert (a["step_error"][np.arange(8)[None, :] >= lengths[:, None]] == 0).all()


def test_embedding_equals_keras_masked_lstm_final_state():
    cfg = ModelConfig(num_features=2, units=5, num_layers=2)
    model = build_autoencoder(cfg)
    values, lengths = batch(seed=3)
    ours = encoder_of(model).predict({"values": values, "lengths": lengths}, verbose=0)
    inp = keras.Input((None, 2))
    x = keras.layers.Masking(0.0)(inp)
    x = keras.layers.LSTM(5, return_sequences=True)(x)
    x = keras.layers.LSTM(5)(x)
    reference = keras.Model(inp, x)
    reference.layers[2].set_weights(model.get_layer("encoder_lstm_0").get_weights())
    reference.layers[3].set_weights(model.get_layer("encoder_lstm_1").get_weights())
    # Masking needs padding to be exactly 0 and real steps never all-zero: true for these sines.
    np.testing.assert_allclose(ours, reference.predict(values, verbose=0), atol=1e-5)


class Recorder(keras.layers.Layer):
    """A stand-in decoder that outputs zeros and remembers the targets it was asked for."""

    def build(self, *shapes):
        self.built = True

    def call(self, embedding, targets, training=None):
        self.seen = targets
        return tf.zeros_like(targets)


@pytest.mark.parametrize("reverse", [True, False])
def test_reconstruction_targets_are_reversed_within_each_length(reverse):
    cfg = ModelConfig(num_features=1, units=3, reverse_target=reverse)
    head = AutoencoderHead(cfg.to_dict())
    head.reconstructor = Recorder()
    x = tf.constant([[[1.0], [2.0], [3.0], [0.0]], [[4.0], [5.0], [0.0], [0.0]]])
    recon, step, _ = head(x, tf.constant([3, 2]), tf.zeros((2, 3)))
    seen = head.reconstructor.seen.numpy()[..., 0]
    expected = [[3, 2, 1, 0], [5, 4, 0, 0]] if reverse else [[1, 2, 3, 0], [4, 5, 0, 0]]
    np.testing.assert_array_equal(seen, expected)
    # zeros reconstructed: the error is the mean square of the valid steps only
    np.testing.assert_allclose(recon.numpy(), [(1 + 4 + 9) / 3, (16 + 25) / 2])
    np.testing.assert_allclose(step.numpy(), [[1, 4, 9, 0], [16, 25, 0, 0]])


def test_predict_mode_targets_the_steps_after_the_encoded_part():
    cfg = ModelConfig(num_features=1, units=3, mode="predict", horizon=2)
    head = AutoencoderHead(cfg.to_dict())
    head.predictor = Recorder()
    x = tf.constant([[[1.0], [2.0], [3.0], [4.0]], [[5.0], [6.0], [7.0], [0.0]]])
    _, step, pred = head(x, tf.constant([4, 3]), tf.zeros((2, 3)))
    np.testing.assert_array_equal(head.predictor.seen.numpy()[..., 0], [[3, 4], [6, 7]])
    np.testing.assert_allclose(pred.numpy(), [(9 + 16) / 2, (36 + 49) / 2])
    np.testing.assert_allclose(step.numpy(), [[0, 0, 9, 16], [0, 36, 49, 0]])


def test_config_round_trips_and_refuses_bad_values():
    cfg = ModelConfig(num_features=3, mode="composite", horizon=4, latent_dim=8)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"^units: expected a positive integer, got 0$"):
        ModelConfig(units=0)
    with pytest.raises(ConfigError, match=r"^horizon: the predict mode needs a positive integer, got 0$"):
        ModelConfig(mode="predict")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) unit"):
        ModelConfig.from_dict({"unit": 3})
    with pytest.raises(ConfigError, match=r"^patch: the composite mode predicts steps one by one; expected 1 or None, "
                                          r"got 2$"):
        ModelConfig(mode="composite", horizon=1, patch=2)
    with pytest.raises(ConfigError, match=r"^patch: the conditioned decoder feeds back one step at a time"):
        ModelConfig(decoder="conditioned", patch=3)


@pytest.mark.parametrize(("longest", "mode", "patch", "expected"), [
    (64, "reconstruct", None, 1), (65, "reconstruct", None, 2), (140, "reconstruct", None, 3),
    (1460, "reconstruct", None, 23), (1, "reconstruct", None, 1), (500, "predict", None, 1),
    (500, "composite", None, 1), (500, "reconstruct", 5, 5), (10, "reconstruct", 4, 4),
])
def test_training_fits_the_longest_row_into_64_lstm_steps_unless_told(longest, mode, patch, expected):
    cfg = ModelConfig(mode=mode, horizon=0 if mode == "reconstruct" else 1, patch=patch).resolve_patch(longest)
    assert cfg.patch == expected
    assert ModelConfig(decoder="conditioned").resolve_patch(longest).patch == 1


def test_train_records_the_patch_it_chose(tmp_path, make_sine_table):
    import pyarrow.parquet as pq

    from seqae.model import load_model
    from seqae.train import TrainConfig, train

    (tmp_path / "data").mkdir()
    pq.write_table(make_sine_table(n=40, length=130, vary=False), tmp_path / "data" / "p.parquet")
    result = train(str(tmp_path / "data"), tmp_path / "m", model_config=ModelConfig(units=4),
                   train_config=TrainConfig(max_epochs=1))
    assert result.metadata["model"]["patch"] == 3  # 130 steps in 44 LSTM steps
    model = load_model(tmp_path / "m").model
    assert model.get_layer("encoder_patch").size == 3


def test_a_model_saved_before_patches_existed_reads_as_patch_1():
    old = {k: v for k, v in ModelConfig(num_features=1).to_dict().items() if k != "patch"}
    cfg = ModelConfig.from_dict(old)
    assert cfg.patch is None and cfg.patch_size == 1
    assert not [layer for layer in build_autoencoder(cfg).layers if "patch" in layer.name]


@pytest.mark.parametrize("family", [f for f in FAMILY if f["mode"] != "predict"],
                         ids=lambda f: "-".join(str(v) for v in f.values()))
def test_reconstruct_gives_what_recon_error_measures(tmp_path, family):
    """The reconstruction drawn in evaluation plots is the one the error is computed from."""
    from seqae.model import TrainedModel
    from seqae.modeldir import ModelInfo

    values, lengths = batch(features=2, seed=3)
    values = values * 5 + 2  # raw units away from the standardised ones
    config = ModelConfig(num_features=2, units=4, **family)
    model = build_autoencoder(config, mean=[2.0, 1.0], std=[5.0, 3.0])
    trained = TrainedModel(tmp_path, model, ModelInfo.__new__(ModelInfo))
    out = trained.reconstruct(values, lengths)
    assert out.shape == values.shape
    recon_error = trained.predict(values, lengths)["recon_error"]
    encoded = lengths - config.horizon
    for i in range(len(lengths)):
        n = encoded[i]
        diff = (out[i, :n] - values[i, :n]) / np.array([5.0, 3.0])
        assert np.mean(diff ** 2) == pytest.approx(recon_error[i], rel=1e-4, abs=1e-6)


def test_a_mode_declared_in_the_table_alone_builds_and_trains(monkeypatch):
    """A mode whose decoders learn targets the model knows is one entry of ``seqae.config.MODES``:
    here composite's two decoders run in the other order, which must give composite's errors."""
    import dataclasses

    from seqae.config import MODES, PREDICTION, RECONSTRUCTION

    monkeypatch.setitem(MODES, "predict_first", dataclasses.replace(MODES["composite"],
                                                                    trains=(PREDICTION, RECONSTRUCTION)))
    values, lengths = batch()
    inputs = {"values": values, "lengths": lengths}
    outputs = {}
    for mode in ("composite", "predict_first"):
        keras.utils.set_random_seed(0)
        cfg = ModelConfig(num_features=2, units=4, mode=mode, horizon=2)
        model = compile_autoencoder(build_autoencoder(cfg), cfg)
        assert training_loss(cfg)[1] == {"recon_error": 1.0, "pred_error": cfg.predict_weight}
        outputs[mode] = model.predict(inputs, verbose=0)
    assert sorted(outputs["predict_first"]) == sorted(cfg.output_names)
    for name in cfg.output_names:
        np.testing.assert_allclose(outputs["predict_first"][name], outputs["composite"][name], rtol=1e-6, err_msg=name)
    targets = {k: np.zeros(len(values), np.float32) for k in training_loss(cfg)[0]}
    model.fit(inputs, targets, epochs=1, batch_size=16, verbose=0)
