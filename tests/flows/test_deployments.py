"""prefect.yaml and `python -m flows serve` describe the same deployments."""

from pathlib import Path

import yaml

from flows.serve import EMBED_CRON, RETRAIN_CRON, deployments

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_matches_serve_and_its_entrypoints_load():
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in spec["deployments"]}
    served = {d.name: d for d in deployments("data/", "models/", "out/")}
    assert declared.keys() == served.keys() == {"embed-new-shards", "retrain", "embed-on-promotion", "embed-on-arrival",
                                                          "retrain-on-drift"}
    for name, d in declared.items():
        flow = load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))
        assert flow.name == served[name].flow_name, name
        assert set(d["parameters"]) <= set(flow.parameters.properties), name
        assert set(served[name].parameters) <= set(flow.parameters.properties), name
    assert declared["embed-new-shards"]["schedules"] == [{"cron": EMBED_CRON}]
    assert declared["retrain"]["schedules"] == [{"cron": RETRAIN_CRON}]
    for name in ("embed-on-promotion", "embed-on-arrival", "retrain-on-drift"):
        (yaml_trigger,), (served_trigger,) = declared[name]["triggers"], served[name].triggers
        assert set(yaml_trigger["expect"]) == served_trigger.expect
        as_lists = {k: v if isinstance(v, list) else [v] for k, v in yaml_trigger["match"].items()}
        assert as_lists == {k: list(v) if isinstance(v, list) else [v] for k, v in served_trigger.match.items()}
    assert declared["embed-on-arrival"]["triggers"][0]["parameters"]["only"] == "{{ event.payload.path }}"


def test_retrain_deployments_train_on_what_serve_was_told():
    from seqae.config import TrainConfig

    served = {d.name: d for d in deployments("data/", "models/", "out/", train=TrainConfig(row_filter="label == 1"))}
    for name in ("retrain", "retrain-on-drift"):
        assert served[name].parameters["train"]["row_filter"] == "label == 1"
        assert served[name].concurrency_limit == 1
    assert "train" not in served["embed-new-shards"].parameters
