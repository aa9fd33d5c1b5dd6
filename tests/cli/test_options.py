"""The command line reads its options from the configs and its help reads at 80 columns.

Every option bound to a config field has that field's default and help (``seqae.config`` is the one
place of both); help at 80 columns cuts no option name, splits no choice and shows the defaults; a
wrong column fails from the first shard's footer, before TensorFlow loads."""

import dataclasses
import os
import re
import subprocess
import sys
import typing

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from seqae import cli
from seqae._version import __version__
from seqae.config import (
    DataConfig,
    EmbedConfig,
    ExportConfig,
    ModelConfig,
    SessionOptions,
    ThresholdConfig,
    TrainConfig,
)
from seqae.configbase import choices_of

runner = CliRunner()
ROOT = typer.main.get_command(cli.app)
COMMANDS = {"validate": cli.validate_cmd, "train": cli.train_cmd, "export": cli.export_cmd, "embed": cli.embed_cmd,
            "threshold": cli.threshold_cmd, "evaluate": cli.evaluate_cmd, "drift": cli.drift_cmd}


def as_config_value(value):
    return value.value if hasattr(value, "value") else value


@pytest.mark.parametrize("name", COMMANDS)
def test_every_bound_option_has_its_fields_default_and_help(name):
    params = {p.name: p for p in ROOT.commands[name].params}
    assert COMMANDS[name].bound, f"seqae {name} binds no config field"
    for param, (cls, field_name) in COMMANDS[name].bound.items():
        field = next(f for f in dataclasses.fields(cls) if f.name == field_name)
        option = params[param]
        assert as_config_value(option.default) == field.default, f"--{param}: default differs from {cls.__name__}"
        assert option.help == field.metadata["help"], f"--{param}: help differs from {cls.__name__}.{field_name}"


@pytest.mark.parametrize("name", COMMANDS)
def test_no_option_of_a_bound_config_is_written_by_hand(name):
    """An option named like a field of a config the command binds is bound from that field."""
    bound = COMMANDS[name].bound
    fields = {f.name for cls, _ in bound.values() for f in dataclasses.fields(cls)}
    by_hand = {p.name for p in ROOT.commands[name].params if p.name not in bound} & fields
    assert by_hand == set()


@pytest.mark.parametrize("cls, field_name", [(ModelConfig, "mode"), (ModelConfig, "decoder"),
                                             (ModelConfig, "activation"), (TrainConfig, "validation_split"),
                                             (DataConfig, "layout"), (SessionOptions, "device"),
                                             (EmbedConfig, "device"), (ThresholdConfig, "method")])
def test_choices_come_from_the_literal(cls, field_name):
    literal = typing.get_type_hints(cls)[field_name]
    assert typing.get_origin(literal) is typing.Literal
    choices = list(choices_of(literal))
    for command, function in COMMANDS.items():
        for param, bound in function.bound.items():
            if bound == (cls, field_name):
                option = next(p for p in ROOT.commands[command].params if p.name == param)
                assert [c.value for c in option.type_descriptor.choices] == choices


def test_embed_config_shares_the_session_fields():
    session = {f.name: f for f in dataclasses.fields(SessionOptions)}
    for field in dataclasses.fields(EmbedConfig):
        if field.name in session:
            assert (field.default, dict(field.metadata)) == (session[field.name].default,
                                                             dict(session[field.name].metadata))
    assert EmbedConfig(device="cpu", threads=2).session_options == SessionOptions(device="cpu", threads=2)


def test_threshold_config_is_one_class():
    from seqae import thresholds

    assert thresholds.ThresholdConfig is ThresholdConfig


def test_version():
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == __version__


def help_at_80(*args):
    result = runner.invoke(cli.app, [*args, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("name", [*COMMANDS, "datasets ecg5000", ""])
def test_help_reads_at_80_columns(name):
    text = help_at_80(*name.split())
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text and "<bool>" not in text
    command = ROOT
    for word in name.split():
        command = command.commands[word]
    for param in command.params:
        for opt in param.opts:  # every name whole, on one line
            assert re.search(rf"(^|[\s,/]){re.escape(opt)}($|[\s,/])", text, re.M), opt
        if getattr(param, "is_flag", False) and param.secondary_opts:
            assert f"{param.opts[0]}/{param.secondary_opts[0]}" in text
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is not None and descriptor.is_choice:  # the choices on one line, no word split
            assert f"<{'|'.join(c.value for c in descriptor.choices)}>" in text


def test_train_help_shows_the_defaults():
    text = " ".join(help_at_80("train").split())
    for option, default in [("--units", "64"), ("--epochs", "300"), ("--batch-size", "64"),
                            ("--learning-rate", "0.003"), ("--mode", "reconstruct"), ("--reverse", "reverse")]:
        assert re.search(rf"{option}\b[^\[]*\[default: {re.escape(default)}[];]", text), option


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": [1, 2], "label": [1, 0], "values": [[1.0, 2.0], [3.0, 4.0]]}), path)
    return path


NO_TENSORFLOW = ("import atexit, sys\n"
                 "atexit.register(lambda: print(sorted({'tensorflow', 'keras'} & set(sys.modules))))\n"
                 "from seqae.cli import main\n"
                 "sys.argv = ['seqae', *sys.argv[1:]]\n"
                 "main()\n")


def test_a_wrong_filter_column_fails_before_any_folder_is_made(labelled, tmp_path):
    # How fast is a benchmark's question (timed tests flake on shared machines); that TensorFlow was
    # never imported is what makes it fast, and the next test checks that.
    args = ["train", "--data", str(labelled), "--model-dir", str(tmp_path / "m"), "--filter", "labelz == 1"]
    result = subprocess.run([sys.executable, "-m", "seqae.cli", *args], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {labelled}: column 'labelz': column is missing; expected a column used by the filter "
        "'labelz == 1', found columns id, label, values"]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args, message", [
    (["--filter", "labelz == 1"], "column 'labelz': column is missing; expected a column used by the filter "
                                  "'labelz == 1', found columns id, label, values"),
    (["--key-column", "key"], "column 'key': column is missing; expected a key column, found columns id, label, "
                              "values"),
    (["--values-column", "label"], "column 'label': wrong type; expected list<float32> (one feature) or "
                                   "list<list<float32>> ([time][feature]), found int64"),
    (["--layout", "long", "--feature-columns", "a", "--window", "2"], "column 'time': column is missing; expected "
     "a time column (numbers or timestamps), found columns id, label, values"),
])
def test_columns_are_checked_before_tensorflow_is_imported(labelled, tmp_path, args, message):
    """At exit the process has not imported TensorFlow (or Keras): the schema check ran first."""
    argv = ["train", "--data", str(labelled), "--model-dir", str(tmp_path / "m"), *args]
    result = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, *argv], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {labelled}: {message}"]
    assert result.stdout == "[]\n"


def test_the_config_is_printed_with_verbose_only(labelled, tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise SystemExit(7)

    monkeypatch.setattr(cli, "_load_tensorflow", stop)
    base = ["train", "--data", str(labelled), "--model-dir", str(tmp_path / "m")]
    quiet = runner.invoke(cli.app, base)
    assert quiet.exit_code == 7 and quiet.stderr == "" and quiet.stdout == ""
    verbose = runner.invoke(cli.app, ["--verbose", *base, "--units", "3"])
    assert verbose.exit_code == 7
    assert '"units": 3' in verbose.stderr and '"max_epochs": 300' in verbose.stderr


@pytest.mark.slow
def test_quiet_train_and_export_print_no_tensorflow_lines(sine_dir, tmp_path):
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    for args in (["train", "--data", str(sine_dir), "--model-dir", str(tmp_path / "m"), "--units", "2", "--epochs",
                  "1"], ["export", str(tmp_path / "m")]):
        result = subprocess.run([sys.executable, "-m", "seqae.cli", "--quiet", *args], capture_output=True, text=True,
                                env=environ)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""


@pytest.mark.parametrize("cls", [ModelConfig, TrainConfig, DataConfig, ExportConfig, EmbedConfig, ThresholdConfig])
def test_every_documented_config_field_is_an_option_of_its_command(cls):
    """A field given help text (``configbase.option``) is meant for the command line: some command offers it
    (``--min-steps`` was once named in ``--patience``'s help and offered nowhere)."""
    offered = {param.name for command in ROOT.commands.values() for param in getattr(command, "params", [])}
    offered |= {param.name for group in ROOT.commands.values() for sub in getattr(group, "commands", {}).values()
                for param in sub.params}
    missing = [f.name for f in dataclasses.fields(cls)
               if "help" in f.metadata and f.metadata.get("flag", f.name).replace("-", "_") not in offered]
    assert missing == [], f"{cls.__name__} fields with help text that no command offers: {missing}"
