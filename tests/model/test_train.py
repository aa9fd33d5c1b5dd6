import json

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from seqae import load_model, names
from seqae.config import ModelConfig
from seqae.errors import ConfigError, ModelDirError
from seqae.train import TrainConfig, split_of, train

pytestmark = pytest.mark.slow  # builds and trains Keras models

TINY = {"units": 4}
FAST = TrainConfig(batch_size=16, max_epochs=2, patience=1, shuffle_buffer=64)


def test_model_dir_round_trip_gives_identical_outputs(tmp_path, sine_dir, make_sine_table):
    result = train(str(sine_dir), tmp_path / "m", model_config=ModelConfig(**TINY, mode="composite", horizon=2,
                                                                          decoder="conditioned"), train_config=FAST)
    meta = result.metadata
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [names.LOSS_PLOT_FILE, names.MODEL_FILE, names.METADATA_FILE]
    assert json.loads((tmp_path / "m" / names.METADATA_FILE).read_text()) == meta
    assert meta["model"]["num_features"] == 1 and meta["model_version"] == 1
    assert meta["training"]["train_rows"] + meta["training"]["validation_rows"] == 96
    assert len(meta["training"]["history"]["loss"]) == meta["training"]["epochs"]
    assert meta["training"]["shards"][0]["fingerprint"]
    assert meta["normalization"]["count"] > 0
    loaded = load_model(tmp_path / "m")
    table = make_sine_table()
    values = np.zeros((8, 12, 1), np.float32)
    lengths = np.zeros(8, np.int32)
    for i in range(8):
        seq = table.column("values")[i].as_py()
        values[i, : len(seq), 0] = seq
        lengths[i] = len(seq)
    a = loaded.predict(values, lengths)
    plain = keras.models.load_model(tmp_path / "m" / names.MODEL_FILE, safe_mode=True)
    b = plain.predict({"values": values, "lengths": lengths}, verbose=0)
    for name in loaded.config.output_names:
        np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(loaded.encoder.predict({"values": values, "lengths": lengths}, verbose=0), a["embedding"])
    # a second training into the same directory bumps the version and replaces the files
    again = train(str(sine_dir), tmp_path / "m", model_config=ModelConfig(**TINY), train_config=FAST)
    assert again.metadata["model_version"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_many_shards_train_exactly_like_one(tmp_path, make_sine_table):
    table = make_sine_table(n=64)
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    pq.write_table(table, tmp_path / "one" / "all.parquet")
    for i in range(8):
        pq.write_table(table.slice(i * 8, 8), tmp_path / "many" / f"part-{i}.parquet")
    config = TrainConfig(batch_size=16, max_epochs=2, patience=5, shuffle=False, read_batch_size=5)
    tf.config.experimental.enable_op_determinism()
    one = train(str(tmp_path / "one"), tmp_path / "m1", model_config=ModelConfig(**TINY), train_config=config)
    many = train(str(tmp_path / "many"), tmp_path / "m8", model_config=ModelConfig(**TINY), train_config=config)
    assert one.metadata["normalization"]["count"] == many.metadata["normalization"]["count"]
    np.testing.assert_allclose(one.metadata["normalization"]["mean"], many.metadata["normalization"]["mean"], rtol=1e-12)
    assert one.metadata["training"]["history"] == many.metadata["training"]["history"]
    w1 = load_model(tmp_path / "m1").model.get_weights()
    w8 = load_model(tmp_path / "m8").model.get_weights()
    for a, b in zip(w1, w8):
        np.testing.assert_array_equal(a, b)


def test_split_is_by_key_and_reproducible():
    import pyarrow as pa

    keys = pa.array(np.arange(20000))
    held = split_of(keys, seed=0, validation_fraction=0.1)
    assert 0.09 < held.mean() < 0.11
    np.testing.assert_array_equal(held, split_of(keys, seed=0, validation_fraction=0.1))
    assert (held != split_of(keys, seed=1, validation_fraction=0.1)).any()
    np.testing.assert_array_equal(held[:50], split_of(keys.slice(0, 50), seed=0, validation_fraction=0.1))
    text = split_of(pa.array([str(k) for k in range(2000)]), seed=0, validation_fraction=0.5)
    assert 0.4 < text.mean() < 0.6


def test_row_filter_and_too_short_rows_for_predict(tmp_path, sine_dir):
    result = train(str(sine_dir), tmp_path / "m", train_config=TrainConfig(
        batch_size=16, max_epochs=1, row_filter="id < 40"), model_config=ModelConfig(**TINY, mode="predict", horizon=7))
    shard = result.metadata["training"]["shards"][0]
    assert shard["rows_filtered"] == 56
    # sequences of 6 steps cannot encode one step and predict 7 more: rejected, counted
    assert shard["reasons"].get("too_short", 0) == shard["rows_rejected"] > 0
    assert result.metadata["data"]["min_length"] == 8


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match=r"^validation_fraction: expected a value in \[0, 1\), got 1.5$"):
        TrainConfig(validation_fraction=1.5)
    with pytest.raises(ConfigError, match="filter 'label ==': not a valid expression"):
        TrainConfig(row_filter="label ==")


def test_load_model_refuses_incomplete_dir(tmp_path):
    with pytest.raises(ModelDirError, match=r"seqae.json is missing"):
        load_model(tmp_path)
