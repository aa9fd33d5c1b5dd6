"""The deployments are declared once (flows/deployments.py): prefect.yaml is its rendering and
`python -m flows serve` serves the same list, each deployment with the parameters it runs with."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.deployments import PROJECT, DeploymentSettings, declare, render_yaml
from flows.serve import EMBED_CRON, RETRAIN_CRON, deployments
from seqae.drift import DriftPolicy

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["embed-new-shards", "retrain", "embed-on-promotion", "embed-on-arrival", "retrain-on-drift"]


def test_the_checked_in_prefect_yaml_is_the_rendering():
    assert (ROOT / "prefect.yaml").read_text() == render_yaml(PROJECT), (
        "prefect.yaml is not the rendering of flows/deployments.py: run python -m flows deployments --write prefect.yaml")


def test_the_command_renders_what_the_test_compares(tmp_path):
    out = tmp_path / "prefect.yaml"
    done = subprocess.run([sys.executable, "-m", "flows", "deployments", "--write", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == render_yaml(PROJECT)


def test_prefect_yaml_and_serve_carry_the_same_deployments_and_parameters():
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load(render_yaml(PROJECT))
    declared = {d["name"]: d for d in spec["deployments"]}
    local = DeploymentSettings("data/", "models/", "out/", row_filter="label == 1", max_epochs=3,
                               label_column="label", normal_value=1)
    served = {d.name: d for d in deployments(local.data, local.models, local.out, row_filter="label == 1",
                                             max_epochs=3, label_column="label", normal_value=1)}
    assert list(declared) == list(served) == NAMES
    placeholders = {"{{ $SEQAE_DATA }}": "data/", "{{ $SEQAE_MODELS }}": "models/", "{{ $SEQAE_OUT }}": "out/"}
    for name, d in declared.items():
        flow = load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))
        assert flow.name == served[name].flow_name, name
        assert set(d["parameters"]) <= set(flow.parameters.properties), name
        as_served = {k: placeholders.get(v, v) if isinstance(v, str) else v for k, v in d["parameters"].items()}
        if "train" in as_served:
            as_served["train"] = {**as_served["train"], "max_epochs": 3}
        assert as_served == served[name].parameters, name
        assert d.get("concurrency_limit") == served[name].concurrency_limit, name
        assert d["work_pool"] == {"name": "seqae-process"}
    assert declared["embed-new-shards"]["schedules"] == [{"cron": EMBED_CRON}]
    assert declared["retrain"]["schedules"] == [{"cron": RETRAIN_CRON}]
    for name in ("embed-on-promotion", "embed-on-arrival", "retrain-on-drift"):
        (yaml_trigger,), (served_trigger,) = declared[name]["triggers"], served[name].triggers
        assert set(yaml_trigger["expect"]) == served_trigger.expect
        as_lists = {k: v if isinstance(v, list) else [v] for k, v in yaml_trigger["match"].items()}
        assert as_lists == {k: list(v) if isinstance(v, list) else [v] for k, v in served_trigger.match.items()}
        assert yaml_trigger.get("parameters") == served_trigger.parameters, name
    assert declared["embed-on-arrival"]["triggers"][0]["parameters"] == {"only": "{{ event.payload.path }}"}
    assert declared["retrain-on-drift"]["triggers"][0]["parameters"] == {
        "drift_episode": "{{ event.payload.episode }}", "drift_model_id": "{{ event.payload.model_id }}"}


def test_each_deployment_says_what_it_trains_and_embeds_with():
    """Issue #24 item 1: the retrains learn the normal rows, the drift policy is set per deployment."""
    policy = DriftPolicy(min_rows=500, cooldown_seconds=60.0)
    by_name = {d.name: d for d in declare(DeploymentSettings("d", "m", "o", "ecg", row_filter="label == 1",
                                                             max_epochs=5, drift=policy))}
    for name in ("retrain", "retrain-on-drift"):
        assert by_name[name].parameters == {"data": "d", "models_root": "m", "model_name": "ecg",
                                            "train": {"row_filter": "label == 1", "max_epochs": 5}}
    for name in ("embed-new-shards", "embed-on-arrival"):
        assert by_name[name].parameters["drift"] == policy.to_dict()
    assert by_name["embed-on-promotion"].parameters["drift"] is None  # re-embedded shards are not new data
    assert by_name["embed-new-shards"].parameters["wait_seconds"] == 0  # the next cron run picks up the rest
    assert by_name["embed-on-arrival"].parameters["wait_seconds"] is None
    yaml_spec = {d["name"]: d for d in yaml.safe_load(render_yaml(PROJECT))["deployments"]}
    assert yaml_spec["retrain-on-drift"]["parameters"]["train"]["row_filter"] == "label == 1"


@pytest.mark.parametrize("args, expected", [
    ([], PROJECT),
    (["--filter", "label == 0", "--epochs", "7", "--name", "ecg"],
     DeploymentSettings(PROJECT.data, PROJECT.models, PROJECT.out, "ecg", "label == 0", 7, DriftPolicy(), "label", 1)),
    (["--drift-alpha", "0"], DeploymentSettings(PROJECT.data, PROJECT.models, PROJECT.out, row_filter="label == 1",
                                                drift=None, label_column="label", normal_value=1)),
    (["--drift-min-rows", "300", "--normal-value", "N", "--label-column", "kind"],
     DeploymentSettings(PROJECT.data, PROJECT.models, PROJECT.out, row_filter="label == 1",
                        drift=DriftPolicy(min_rows=300), label_column="kind", normal_value="N")),
])
def test_command_line_options_become_settings(args, expected):
    from typer.testing import CliRunner

    from flows.__main__ import app

    result = CliRunner().invoke(app, ["deployments", *args])
    assert result.exit_code == 0, result.output
    assert result.output == render_yaml(expected)


def test_served_deployments_validate_their_own_parameters():
    from prefect.utilities.schema_tools.validation import validate

    for deployment in deployments("data/", "models/", "out/", row_filter="label == 1"):
        schema = deployment._parameter_openapi_schema.model_dump()
        validate(deployment.parameters, schema, raise_on_error=True, ignore_required=True)
