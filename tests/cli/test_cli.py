import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from seqae.cli import app

runner = CliRunner()


def seqae(*args):
    """Run the real console entry point, as a user would."""
    return subprocess.run([sys.executable, "-m", "seqae.cli", *args], capture_output=True, text=True)


def test_help_lists_subcommands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("datasets", "validate"):
        assert name in result.output


def test_datasets_then_validate_reports_counts(tmp_path):
    result = runner.invoke(app, ["--quiet", "datasets", "ecg5000", "--out", str(tmp_path), "--shards", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["--quiet", "validate", "--data", str(tmp_path), "--filter", "label == 1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["totals"]["rows_in"] == 5000
    assert report["totals"]["sequences_out"] == 2919
    assert report["totals"]["rows_filtered"] == 2081
    assert report["num_features"] == 1 and report["longest"] == 140


def test_bad_input_is_one_line_and_exit_1(tmp_path):
    pq.write_table(pa.table({"id": [1], "seq": [[1.0]]}), tmp_path / "x.parquet")
    result = seqae("validate", "--data", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path}/x.parquet: column 'values': column is missing; expected list<float32> or "
        "list<list<float32>>, found columns id, seq"
    ]


def test_wrong_options_are_refused_before_work(tmp_path):
    result = seqae("datasets", "ecg5000", "--out", str(tmp_path), "--shards", "0")
    assert result.returncode == 2 and "Invalid value for '--shards'" in result.stderr
    assert not list(tmp_path.iterdir())
    result = seqae("validate", "--data", str(tmp_path), "--window", "4")
    assert result.returncode == 1
    assert "window/stride: only the long layout is cut into windows" in result.stderr


@pytest.mark.slow
def test_train_export_embed_through_the_cli(tmp_path, sine_dir):
    config = tmp_path / "config.toml"
    config.write_text('[model]\nunits = 3\nmode = "predict"\nhorizon = 2\n[train]\nmax_epochs = 1\nbatch_size = 16\n')
    model = tmp_path / "model"
    result = runner.invoke(app, ["--quiet", "train", "--data", str(sine_dir), "--model-dir", str(model),
                                 "--config", str(config), "--units", "2", "--filter", "id < 80", "--lr-patience", "3",
                                 "--cache-mb", "0"])
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["model"]["units"] == 2 and trained["model"]["horizon"] == 2  # option beats file
    recorded = json.loads((model / "seqae.json").read_text())["training"]["config"]
    assert recorded["lr_patience"] == 3 and recorded["cache_mb"] == 0 and recorded["batch_size"] == 16
    assert trained["train_rows"] + trained["validation_rows"] == 80
    assert trained["monitor"] == "loss"  # about 8 held-out rows, fewer than min_validation_rows (64)
    result = runner.invoke(app, ["--quiet", "export", str(model)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["parity"]["passed"] is True
    result = runner.invoke(app, ["--quiet", "embed", "--model", str(model), "--data", str(sine_dir),
                                 "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["totals"]["rows_in"] == 96 == report["totals"]["rows_written"] + report["totals"]["rows_rejected"]


def test_train_refuses_unknown_config_keys_before_reading_data(tmp_path):
    config = tmp_path / "c.json"
    config.write_text('{"model": {"unitz": 3}}')
    result = seqae("train", "--data", str(tmp_path / "missing"), "--model-dir", str(tmp_path / "m"), "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: model options: unknown key(s) unitz")


def test_train_options_are_checked_without_tensorflow(tmp_path):
    """The inference install has no TensorFlow: a wrong option must still be named as such."""
    code = ("import sys\nfor m in ('tensorflow', 'keras', 'tf2onnx'): sys.modules[m] = None\n"
            "from seqae.cli import main\nsys.argv = ['seqae', 'train', '--data', 'x', '--model-dir', 'm', "
            "'--config', sys.argv[1]]\nmain()")
    config = tmp_path / "c.toml"
    config.write_text('[model]\nunits = 3\nunitz = 4\n')
    result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: model options: unknown key(s) unitz; expected")
    config.write_text('[model]\nunits = 3\n')
    result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True)
    assert result.returncode == 1  # valid options: now it needs the training extra, and says so
    assert "install the training extra: pip install 'seqae[train]'" in result.stderr


@pytest.mark.slow
def test_embed_names_every_quarantined_file_and_exits_1(model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    (data / "d.parquet").write_text("not parquet")
    result = seqae("--quiet", "embed", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"),
                   "--device", "cpu")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {data}/d.parquet: cannot be read as Parquet (opening the footer); expected a valid Parquet file, "
        "found ArrowInvalid: Parquet magic bytes not found in footer. Either the file is corrupted or this is not a "
        "parquet file. The file is damaged, truncated or not Parquet: write or copy it again from its source",
        f"error: 1 input file(s) quarantined (recorded in {tmp_path}/o/_seqae/quarantine/); the other 3 shard(s) are "
        "committed"]
    assert json.loads(result.stdout)["totals"]["rows_written"] == 87


@pytest.mark.slow
def test_threshold_evaluate_and_drift_through_the_cli(model_dir, mixed_dir, tmp_path):
    import shutil

    data, _ = mixed_dir
    model = tmp_path / "m"
    shutil.copytree(model_dir, model)
    result = seqae("--quiet", "threshold", "--model", str(model), "--method", "percentile", "--device", "cpu")
    assert result.returncode == 1  # the tiny model's held-out reference has too few rows, and says what to do
    assert "pass --data with rows you know are normal" in result.stderr
    result = seqae("--quiet", "threshold", "--model", str(model), "--data", str(data), "--filter", "label == 1",
                   "--method", "percentile", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["fitted_on"] == 87
    result = seqae("--quiet", "drift", "--model", str(model), "--data", str(data), "--device", "cpu")
    assert result.returncode in (0, 3) and json.loads(result.stdout)["verdict"] in ("drifted", "no drift")
    result = seqae("--quiet", "evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "r"),
                   "--device", "cpu")
    assert result.returncode == 0, result.stderr  # every label is 1: one class, so the AUCs are undefined
    anomaly = json.loads(result.stdout)["anomaly"]
    assert anomaly["roc_auc"] is None and anomaly["undefined"].startswith("ROC-AUC and PR-AUC are undefined: the "
                                                                        "labels hold one class only")


@pytest.mark.slow
def test_a_run_where_every_row_is_rejected_exits_1_saying_so(model_dir, tmp_path):
    (tmp_path / "d").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "label": pa.array([1, 1], pa.int32()), "values": [None, [1.0]]}),
                   tmp_path / "d" / "x.parquet")
    result = seqae("--quiet", "embed", "--model", str(model_dir), "--data", str(tmp_path / "d"), "--out",
                   str(tmp_path / "o"), "--device", "cpu")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: every one of the 2 input rows was rejected; nothing was written (reasons in {tmp_path}/o/rejects)")


def test_export_on_a_truncated_seqae_json_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "seqae.json").write_text('{"model_id": "x", "mod')
    result = seqae("export", str(tmp_path / "m"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path}/m/seqae.json: not a valid seqae.json")


URI = "s3://AKIA:Zq9s3cr3t/def+ghi@bucket/m"


@pytest.mark.parametrize("args", [
    ["train", "--data", "x", "--model-dir", URI],
    ["export", URI],
    ["threshold", "--model", URI],
    ["evaluate", "--model", URI, "--data", "x"],
    ["evaluate", "--model", "m", "--data", "x", "--out", URI],
    ["drift", "--model", URI, "--data", "x"],
    ["datasets", "ecg5000", "--out", URI],
    ["registry", "promote", URI, "--models", "models"],
    ["registry", "current", "--models", URI],
    ["registry", "history", "--models", URI],
])
def test_commands_on_uris_refuse_credentials_in_one_line(tmp_path, args):
    """Model directories and reports take URIs as embed does (issue #26), never with credentials in them."""
    result = subprocess.run([sys.executable, "-m", "seqae.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[0].startswith(
        "error: s3://***@bucket/m: credentials in a URI are refused (user info (KEY:SECRET@));")
    assert "Zq9s3cr3t" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # never a local folder s3:/AKIA:...


@pytest.mark.parametrize("args, what", [
    (["train", "--data", "x", "--model-dir", "m", "--config", URI], "--config of seqae train"),
    (["validate", "--data", "x", "--rejects-dir", URI], "--rejects-dir of seqae validate"),
])
def test_commands_on_local_folders_refuse_a_uri_in_one_line(tmp_path, args, what):
    result = subprocess.run([sys.executable, "-m", "seqae.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: s3://***@bucket/m: {what} takes a local path; expected a local path, found a URI (object stores are "
        "not supported there yet)"]
    assert "Zq9s3cr3t" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # never a local folder s3:/AKIA:...


def test_the_registry_commands_promote_show_and_list_on_an_object_store(model_dir, s3, tmp_path):
    """Promote twice and roll back by promoting version 1's snapshot: history grows, current follows."""
    from seqae.modelstore import upload_model_dir

    models = f"s3://{s3.bucket}/models"
    upload_model_dir(model_dir, f"s3://{s3.bucket}/staging/m")

    def cli(*args):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    empty = runner.invoke(app, ["registry", "current", "--models", models, "--name", "ecg"])
    assert empty.exit_code == 1 and str(empty.exception) == (f"{models}: no model promoted under the name 'ecg'; "
                                                             "promote one first (seqae registry promote)")
    assert cli("registry", "history", "--models", models, "--name", "ecg") == []
    first = cli("registry", "promote", f"s3://{s3.bucket}/staging/m", "--models", models, "--name", "ecg")
    second = cli("registry", "promote", str(model_dir), "--models", models, "--name", "ecg")
    assert (first["model_version"], second["model_version"]) == (1, 2)
    assert first["location"].startswith(f"{models}/") and first["location"] != second["location"]
    current = cli("registry", "current", "--models", models, "--name", "ecg")
    assert current["model_version"] == 2 and current["model_dir"] == second["location"]
    rollback = cli("registry", "promote", first["location"], "--models", models, "--name", "ecg")
    assert rollback["model_version"] == 3 and rollback["model_id"] == first["model_id"]
    history = cli("registry", "history", "--models", models, "--name", "ecg")
    assert [h["model_version"] for h in history] == [1, 2, 3]
    assert cli("registry", "current", "--models", models, "--name", "ecg")["model_version"] == 3
    assert list(tmp_path.iterdir()) == []  # nothing local: the registry is the bucket
