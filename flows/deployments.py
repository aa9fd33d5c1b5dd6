"""The deployments, declared once: ``prefect.yaml`` is rendered from here
(``python -m flows deployments --write prefect.yaml``; a test holds the checked-in file to the
rendering) and ``python -m flows serve`` serves the same list. A new deployment is one entry of
``declare``.

What a deployment trains and embeds with is a parameter of that deployment, stored with it by
``prefect deploy`` (or by ``serve`` when it starts): the locations, the model name, the row filter
and epochs of the retrains, the drift policy of the embeds. Nothing of these is read from the
worker's environment at run time; to change one, change the settings and deploy (or serve) again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from flows.tasks import DRIFT_EVENT, PROMOTED_EVENT, SHARD_LANDED_EVENT
from seqae import names
from seqae.drift import DriftPolicy

EMBED_CRON = "*/15 * * * *"
RETRAIN_CRON = "0 3 * * 1"
WORK_POOL = "seqae-process"
ENTRYPOINTS = {"embed": "flows/definitions.py:embed", "retrain": "flows/definitions.py:retrain"}
#: In prefect.yaml: filled in by ``prefect deploy`` from the environment of the shell that deploys.
FROM_DEPLOY_ENV: dict[str, Any] = {"data": "{{ $SEQAE_DATA }}", "models": "{{ $SEQAE_MODELS }}", "out": "{{ $SEQAE_OUT }}"}


@dataclass(frozen=True)
class DeploymentSettings:
    """What the deployments run with. Every field becomes a deployment parameter, fixed when the
    deployments are created (``prefect deploy`` or ``serve``).

    Args:
        data, models, out: the shards, the models root (the registry), the output folder.
        name: the model name in the registry.
        row_filter: what the retrains train on, e.g. ``"label == 1"`` (the normal rows): without
            one a retrain learns every row, anomalies included.
        max_epochs: most epochs of the retrains (None: the ``TrainConfig`` default).
        drift: the drift policy after the embeds of new shards (None: no drift check).
        label_column, normal_value: evaluate each embed run against this column when given.
    """

    data: str
    models: str
    out: str
    name: str = names.DEFAULT_MODEL_NAME
    row_filter: str | None = None
    max_epochs: int | None = None
    drift: DriftPolicy | None = DriftPolicy()
    label_column: str | None = None
    normal_value: Any = None


#: What the checked-in prefect.yaml deploys: locations from the deploying shell's SEQAE_DATA,
#: SEQAE_MODELS, SEQAE_OUT; retrains on the normal rows of the bundled ECG data (label 1).
PROJECT = DeploymentSettings(**FROM_DEPLOY_ENV, row_filter="label == 1", label_column="label", normal_value=1)


@dataclass(frozen=True)
class Trigger:
    """Run on an event: ``expect`` it, from a resource whose labels ``match``; ``parameters`` (Jinja
    templates over the event) are set over the deployment's own."""

    expect: str
    match: dict[str, str | list[str]]
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """One deployment of ``flows/definitions.py``'s ``flow``."""

    name: str
    flow: str
    description: str
    parameters: dict[str, Any]
    cron: str | None = None
    trigger: Trigger | None = None
    concurrency_limit: int | None = None

    @property
    def entrypoint(self) -> str:
        return ENTRYPOINTS[self.flow]


def declare(settings: DeploymentSettings) -> list[Deployment]:
    """Every deployment that ``settings`` make."""
    s = settings
    model: dict[str, str | list[str]] = {"prefect.resource.id": f"seqae.model.{s.name}"}
    embed = {"data": s.data, "out": s.out, "models_root": s.models, "model_name": s.name,
             "label_column": s.label_column, "normal_value": s.normal_value}
    drift = None if s.drift is None else s.drift.to_dict()
    train = {"row_filter": s.row_filter, **({"max_epochs": s.max_epochs} if s.max_epochs else {})}
    retrain = {"data": s.data, "models_root": s.models, "model_name": s.name, "train": train}
    return [
        Deployment("embed-new-shards", "embed", "Embeds shards that arrived since the last run; ends at once when "
                   "another embed run writes to the output folder (the next run picks up what is left).",
                   {**embed, "drift": drift, "wait_seconds": 0}, cron=EMBED_CRON),
        Deployment("retrain", "retrain", "Weekly train -> export -> threshold -> promote.", retrain,
                   cron=RETRAIN_CRON, concurrency_limit=1),
        Deployment("embed-on-promotion", "embed", "Re-embeds everything with a newly promoted model (no drift "
                   "check: these shards are not new data).", {**embed, "drift": None, "wait_seconds": None},
                   trigger=Trigger(PROMOTED_EVENT, model)),
        Deployment("embed-on-arrival", "embed", "Embeds the one shard a seqae.shard.landed event names.",
                   {**embed, "drift": drift, "wait_seconds": None},
                   trigger=Trigger(SHARD_LANDED_EVENT, {"prefect.resource.id": "seqae.shard.*"},
                                   {"only": "{{ event.payload.path }}"})),
        Deployment("retrain-on-drift", "retrain", "Retrains when new data drifted from the reference (once per "
                   "drift episode; a run that waited checks first that it is still needed).", retrain,
                   trigger=Trigger(DRIFT_EVENT, model, {"drift_episode": "{{ event.payload.episode }}",
                                                        "drift_model_id": "{{ event.payload.model_id }}"}),
                   concurrency_limit=1),
    ]


HEADER = """\
# seqae's deployments for `prefect deploy --all`. RENDERED from flows/deployments.py by
#   python -m flows deployments --write prefect.yaml
# do not edit by hand (tests/flows/test_deployments.py checks it is the rendering); `python -m flows
# serve` serves the same deployments from one process.
#
# Fixed when you run `prefect deploy --all` (read from that shell's environment, then stored in the
# deployments; a worker's environment does not change them; deploy again after changing them):
#   SEQAE_DATA    the Parquet shards (path or URI)
#   SEQAE_MODELS  the models root (registry of promoted models; a local or mounted path)
#   SEQAE_OUT     the output folder or URI
# Fixed here, per deployment (change flows/deployments.py, render, deploy again): the model name,
# what the retrains train on (row_filter), their epochs, the drift policy, the label to evaluate.
# Read by the worker when each run starts: SEQAE_PROJECT_DIR (this repository on the worker machine,
# the pull step below), SEQAE_RAY_ADDRESS, SEQAE_STORAGE_SECRET_BLOCK; and by the flows at run time:
# the registry's current model and the drift state (<models>/<name>/drift.json).
# Create the work pool once: prefect work-pool create seqae-process --type process
"""


def render_yaml(settings: DeploymentSettings = PROJECT) -> str:
    """``prefect.yaml`` for ``settings``."""
    deployments = []
    for d in declare(settings):
        entry: dict[str, Any] = {"name": d.name, "description": d.description, "entrypoint": d.entrypoint}
        if d.concurrency_limit is not None:
            entry["concurrency_limit"] = d.concurrency_limit
        entry["parameters"] = d.parameters
        if d.cron:
            entry["schedules"] = [{"cron": d.cron}]
        if d.trigger:
            trigger: dict[str, Any] = {"type": "event", "enabled": True, "expect": [d.trigger.expect],
                                       "match": d.trigger.match}
            if d.trigger.parameters:
                trigger["parameters"] = d.trigger.parameters
            entry["triggers"] = [trigger]
        entry["work_pool"] = {"name": WORK_POOL}
        deployments.append(entry)
    spec = {"name": "seqae", "prefect-version": _prefect_version(), "build": None, "push": None,
            "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SEQAE_PROJECT_DIR }}"}}],
            "deployments": deployments}
    return HEADER + yaml.dump(spec, Dumper=_Dumper, sort_keys=False, width=110, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """Every value written out where it is used (no ``&id001`` anchors): each deployment reads whole."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _prefect_version() -> str:
    import prefect

    return prefect.__version__


def to_runner_deployments(settings: DeploymentSettings) -> list:
    """The same deployments for ``prefect.serve`` (their parameter schemas refuse credentials in
    location parameters, and the API enforces it)."""
    from prefect.events import DeploymentEventTrigger

    from flows.credentials import forbid_credentials
    from flows.definitions import embed, retrain

    flows: dict[str, Any] = {"embed": embed, "retrain": retrain}
    served = []
    for d in declare(settings):
        triggers = None
        if d.trigger:
            triggers = [DeploymentEventTrigger(expect={d.trigger.expect}, match=d.trigger.match,
                                               parameters=d.trigger.parameters or None)]
        deployment = flows[d.flow].to_deployment(name=d.name, description=d.description, parameters=d.parameters,
                                                 cron=d.cron, triggers=triggers, concurrency_limit=d.concurrency_limit)
        deployment.enforce_parameter_schema = True
        forbid_credentials(deployment._parameter_openapi_schema.properties)
        served.append(deployment)
    return served


def settings_with(settings: DeploymentSettings, **changes: Any) -> DeploymentSettings:
    """``settings`` with the given fields changed (None leaves a field as it is)."""
    return dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
