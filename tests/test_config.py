import dataclasses
import json
import re
import typing
from typing import Literal

import pytest

from seqae.config import (
    DataConfig,
    EmbedConfig,
    ExportConfig,
    ModelConfig,
    SessionOptions,
    ThresholdConfig,
    TrainConfig,
    load_config_file,
)
from seqae.errors import ConfigError, ModelDirError
from seqae.modeldir import ModelInfo

CONFIGS = [
    ModelConfig(),
    ModelConfig(num_features=3, mode="composite", horizon=2, reverse_target=False, decoder="conditioned", units=8,
                latent_dim=2, num_layers=2, dropout=0.25, activation="relu", learning_rate=0.01, clipnorm=None,
                predict_weight=0.5),
    TrainConfig(),
    TrainConfig(batch_size=8, max_epochs=3, patience=1, lr_patience=2, min_delta=0.0, validation_fraction=0.0,
                row_filter="label == 1", seed=7, shuffle=False, shuffle_buffer=5, read_batch_size=100),
    DataConfig(),
    DataConfig(layout="long", key_column="series", time_column="t", feature_columns=("a", "b"), num_features=2,
               min_length=2, max_length=9, window=4, stride=2, partial_windows="drop", passthrough=("site",)),
    ExportConfig(),
    ExportConfig(opset=13, fp16=True, parity_rows=8, embedding_atol=0.0, error_rtol=5e-4, step_error_rtol=0.1,
                 error_atol_floor=1e-5),
    EmbedConfig(),
    EmbedConfig(device="cpu", batch_size=64, read_batch_size=10, queue_size=1, workers=3, threads=2, step_errors=True,
                overwrite=True, allow_cpu_nodes=True),
    SessionOptions(),
    SessionOptions(device="cuda", fp16=True, threads=4, allow_cpu_nodes=True),
]
IDS = [f"{type(c).__name__}-{i % 2}" for i, c in enumerate(CONFIGS)]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_round_trip_through_dict_and_json(config):
    data = config.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(config)}
    assert not any(isinstance(v, tuple) for v in data.values())  # tuples travel as lists
    assert type(config).from_dict(data) == config
    assert type(config).from_dict(json.loads(json.dumps(data))) == config


def test_round_trip_restores_tuples():
    config = DataConfig.from_dict(json.loads(json.dumps(CONFIGS[5].to_dict())))
    assert config.feature_columns == ("a", "b") and config.passthrough == ("site",)
    assert DataConfig(passthrough=["x"]).passthrough == ("x",)


@pytest.mark.parametrize("config", CONFIGS[::2], ids=IDS[::2])
def test_frozen(config):
    name = dataclasses.fields(config)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, name, getattr(config, name))


@pytest.mark.parametrize("cls, source", [
    (ModelConfig, "model config"), (TrainConfig, "train config"), (DataConfig, "data config"),
    (ExportConfig, "export config"), (EmbedConfig, "embed config"), (SessionOptions, "session options"),
])
def test_from_dict_refuses_unknown_keys(cls, source):
    known = ", ".join(sorted(f.name for f in dataclasses.fields(cls)))
    with pytest.raises(ConfigError) as err:
        cls.from_dict({"zeta": 1, "alpha": 2})
    assert str(err.value) == f"{source}: unknown key(s) alpha, zeta; expected some of {known}"
    with pytest.raises(ConfigError) as err:
        cls.from_dict(["x"])
    assert str(err.value) == f"{source}: expected a mapping of option names to values, got list"


def test_from_dict_unknown_key_message_and_source():
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict({"unitz": 4, "units": 4})
    assert str(err.value) == (
        "model config: unknown key(s) unitz; expected some of activation, clipnorm, decoder, dropout, horizon, "
        "latent_dim, learning_rate, mode, num_features, num_layers, patch, predict_weight, reverse_target, units"
    )
    with pytest.raises(ConfigError, match=r"^cfg\.toml \[train\]: unknown key\(s\) epochs; "):
        TrainConfig.from_dict({"epochs": 1}, "cfg.toml [train]")
    assert ModelConfig.from_dict({}) == ModelConfig()


def test_from_dict_validates_values():
    with pytest.raises(ConfigError, match=r"^units: expected a positive integer, got 0$"):
        ModelConfig.from_dict({"units": 0})
    with pytest.raises(ConfigError, match=r"^horizon: the predict mode needs a positive integer, got 0$"):
        ModelConfig.from_dict({"mode": "predict"})
    with pytest.raises(ConfigError, match=r"^opset: expected 13 to 18 \(tested with tf2onnx 1\.17\), got 19$"):
        ExportConfig.from_dict({"opset": 19})
    with pytest.raises(ConfigError, match=r"^threads: expected a positive integer, got -1$"):
        EmbedConfig.from_dict({"threads": -1})



def test_latent_dim_refuses_a_bool():
    with pytest.raises(ConfigError, match="^latent_dim: "):
        ModelConfig(latent_dim=True)


@pytest.mark.parametrize("name, text", [
    ("cfg.toml", '[model]\nunits = 8\nmode = "predict"\nhorizon = 2\n\n[train]\nmax_epochs = 3\n'),
    ("cfg.json", '{"model": {"units": 8, "mode": "predict", "horizon": 2}, "train": {"max_epochs": 3}}'),
])
def test_load_config_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    sections = load_config_file(path)
    assert sections == {"model": {"units": 8, "mode": "predict", "horizon": 2}, "train": {"max_epochs": 3}}
    assert ModelConfig.from_dict(sections["model"]) == ModelConfig(units=8, mode="predict", horizon=2)


@pytest.mark.parametrize("name, text, message", [
    ("c.toml", "[model]\n[serve]\nport = 1\n[aaa]\n", "unknown section(s) aaa, serve; expected some of data, model, train"),
    ("c.json", '{"data": {}, "extra": 1}', "unknown section(s) extra; expected some of data, model, train"),
    ("c.json", "[1, 2]", "expected sections data, model, train; found a list"),
])
def test_load_config_file_refuses_other_shapes(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert str(err.value) == f"{path}: {message}"


@pytest.mark.parametrize("name, text, kind", [
    ("c.json", '{"model": ', "JSON"),
    ("c.conf", "units = 3", "JSON"),  # anything but .toml is read as JSON
    ("c.toml", "[model\nunits = ", "TOML"),
])
def test_load_config_file_not_valid(tmp_path, name, text, kind):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a valid {kind} file (") and message.endswith(")")


def test_load_config_file_missing(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config_file(tmp_path / "none.toml")
    assert str(err.value) == f"{tmp_path / 'none.toml'}: cannot read the config file (No such file or directory)"



def test_load_config_file_binary(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(b"\xff\xfe\x80 not text")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: "):
        load_config_file(path)


# --- seqae.json -------------------------------------------------------------------------------

def model_dir_with(tmp_path, content):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "seqae.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return directory


GOOD = {"model_id": "m1", "model_version": 2, "model": {"num_features": 1, "units": 4}, "data": {}}


def test_model_info_reads_a_minimal_file(tmp_path):
    info = ModelInfo.read(model_dir_with(tmp_path, GOOD))
    assert (info.model_id, info.model_version) == ("m1", 2)
    assert info.model == ModelConfig(num_features=1, units=4) and info.data == DataConfig()
    assert info.feature_names == ("values",) and info.files == {} and not info.exported


def test_model_info_missing_directory(tmp_path):
    with pytest.raises(ModelDirError) as err:
        ModelInfo.read(tmp_path / "nowhere")
    assert str(err.value) == (f"{tmp_path / 'nowhere'}: seqae.json is missing; expected a model directory "
                              "written by seqae train")


@pytest.mark.parametrize("content, message", [
    ("[]", "expected a JSON object written by seqae train, found list"),
    ('"text"', "expected a JSON object written by seqae train, found str"),
    ({k: v for k, v in GOOD.items() if k != "model"}, "missing key(s) model; expected seqae metadata (re-run seqae "
                                                      "train)"),
    ({"model": {}}, "missing key(s) model_id, model_version, data; expected seqae metadata (re-run seqae train)"),
    ("{oops", "not a valid seqae.json (Expecting property name enclosed in double quotes at line 1)"),
    ("", "not a valid seqae.json (Expecting value at line 1)"),
    ({**GOOD, "model": {"units": 4}}, "model.num_features is missing; expected the feature count of the data"),
    ({**GOOD, "model": {"num_features": 1, "unitz": 4}}, "model: unknown key(s) unitz; expected some of activation, "
     "clipnorm, decoder, dropout, horizon, latent_dim, learning_rate, mode, num_features, num_layers, patch, "
     "predict_weight, reverse_target, units"),
    ({**GOOD, "model": []}, "model: expected a mapping of option names to values, got list"),
])
def test_model_info_bad_metadata(tmp_path, content, message):
    directory = model_dir_with(tmp_path, content)
    with pytest.raises(ModelDirError) as err:
        ModelInfo.read(directory)
    assert str(err.value) == f"{directory / 'seqae.json'}: {message}"
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("section, value", [("model", {"num_features": 1, "units": 0}), ("data", {"min_length": 0})])
def test_model_info_bad_value_names_the_file(tmp_path, section, value):
    directory = model_dir_with(tmp_path, {**GOOD, section: value})
    with pytest.raises(ModelDirError) as err:
        ModelInfo.read(directory)
    assert str(err.value).startswith(f"{directory / 'seqae.json'}: {section}: ")



def test_model_info_binary_metadata(tmp_path):
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "seqae.json").write_bytes(b"\x80\x81 binary")
    with pytest.raises(ModelDirError, match=rf"^{re.escape(str(directory / 'seqae.json'))}: "):
        ModelInfo.read(directory)


# --- choices, defaults and help: written once ---------------------------------------------------

LITERAL_FIELDS = [(cls, f.name) for cls in (ModelConfig, TrainConfig, DataConfig, SessionOptions, EmbedConfig,
                                            ThresholdConfig)
                  for f in dataclasses.fields(cls) if typing.get_origin(typing.get_type_hints(cls)[f.name]) is Literal]


def test_every_choice_set_is_a_literal():
    assert {(cls.__name__, name) for cls, name in LITERAL_FIELDS} >= {
        ("ModelConfig", "mode"), ("ModelConfig", "decoder"), ("ModelConfig", "activation"),
        ("TrainConfig", "validation_split"), ("DataConfig", "layout"), ("DataConfig", "partial_windows"),
        ("SessionOptions", "device"), ("EmbedConfig", "device"), ("ThresholdConfig", "method")}


@pytest.mark.parametrize("cls, name", LITERAL_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in LITERAL_FIELDS])
def test_a_literal_field_refuses_other_values_naming_its_choices(cls, name):
    choices = typing.get_args(typing.get_type_hints(cls)[name])
    assert getattr(cls(), name) in choices
    expected = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
    with pytest.raises(ConfigError) as err:
        cls(**{name: "nope"})
    assert str(err.value) == f"{name}: expected {expected}, got 'nope'"


def test_option_fields_carry_one_line_help():
    for cls in (ModelConfig, TrainConfig, DataConfig, ExportConfig, SessionOptions, EmbedConfig, ThresholdConfig):
        for f in dataclasses.fields(cls):
            if "help" in f.metadata:
                assert f.metadata["help"].strip() and "\n" not in f.metadata["help"], f"{cls.__name__}.{f.name}"


# --- the mode table ---------------------------------------------------------------------------------

def test_the_mode_table_declares_each_mode_once_and_every_config_reads_it():
    """``MODES`` and the ``Mode`` literal (the type and the command line's choices) list the same modes;
    each mode exports the errors its decoders train, writes only what it exports, and needs a horizon
    exactly when a decoder learns the future."""
    from seqae import names
    from seqae.config import MODES, Mode
    from seqae.configbase import choices_of

    assert tuple(MODES) == choices_of(Mode) == ("reconstruct", "predict", "composite")
    weights = {f.name for f in dataclasses.fields(ModelConfig) if f.type in ("float", float)}
    for name, spec in MODES.items():
        assert spec.outputs[0] == names.EMBEDDING and names.STEP_ERROR in spec.outputs
        assert {task.error for task in spec.trains} <= set(spec.outputs)
        assert set(spec.columns) <= set(spec.outputs) - {names.STEP_ERROR}  # step_error is an option of embed
        assert all(task.weight is None or task.weight in weights for task in spec.trains)
        config = ModelConfig(mode=name, horizon=2 if spec.predicts else 0)
        assert config.output_names == list(spec.outputs) and config.mode_spec is spec
        if not spec.predicts:
            with pytest.raises(ConfigError, match=rf"^horizon: the {name} mode predicts nothing; expected 0, got 2$"):
                ModelConfig(mode=name, horizon=2)
    assert [name for name, spec in MODES.items() if spec.predicts] == ["predict", "composite"]
    assert [name for name, spec in MODES.items() if spec.reconstructs] == ["reconstruct", "composite"]
    with pytest.raises(ConfigError, match=r"^mode: expected 'reconstruct', 'predict' or 'composite', got 'denoise'$"):
        ModelConfig(mode="denoise")
