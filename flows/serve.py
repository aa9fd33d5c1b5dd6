"""Every deployment of ``prefect.yaml``, served from one process (``python -m flows serve``).

    embed-new-shards    cron, every 15 minutes: embeds what arrived since the last run (done shards skip)
    retrain             cron, Mondays 03:00: train -> export -> promote
    embed-on-promotion  trigger on seqae.model.promoted: re-embeds everything with the new model
    embed-on-arrival    trigger on seqae.shard.landed: embeds the shard the event names
    retrain-on-drift    trigger on seqae.drift.detected: train -> export -> threshold -> promote

Schedules and triggers need a Prefect server (``PREFECT_API_URL``); stopping ``serve`` pauses the
deployments.
"""

from __future__ import annotations

from prefect import serve
from prefect.events import DeploymentEventTrigger

from flows.credentials import forbid_credentials
from flows.definitions import embed, retrain
from flows.tasks import DRIFT_EVENT, PROMOTED_EVENT, SHARD_LANDED_EVENT
from seqae.config import TrainConfig
from seqae.storage import refuse_credentials, require_local

EMBED_CRON = "*/15 * * * *"
RETRAIN_CRON = "0 3 * * 1"


def deployments(data: str, models: str, out: str, name: str = "default", drift_alpha: float | None = 0.01,
                train: TrainConfig | None = None) -> list:
    """The five deployments; ``train`` is what the retrain deployments train with (e.g. a row filter
    that keeps the normal rows: retraining on drift must learn normal data, not the drift).

    Each deployment's parameter schema refuses credentials in its path parameters, and the API
    enforces it: a run whose ``only`` (an event's path) or any other location carries a secret is
    refused before it is created, so the secret is never stored as a run parameter. ``data``, ``out``
    and ``models`` themselves are checked here (``models`` is the registry: local paths only).

    Raises:
        SeqaeError: a location carries credentials, or ``models`` is a URI.
    """
    for location in (data, out, models):
        refuse_credentials(location)
    require_local(models, "models (the model registry)")
    common = {"data": data, "out": out, "models_root": models, "model_name": name, "drift_alpha": drift_alpha}
    retrain_parameters = {"data": data, "models_root": models, "model_name": name,
                          **({"train": train.to_dict()} if train is not None else {})}
    served = [
        embed.to_deployment(name="embed-new-shards", cron=EMBED_CRON, parameters=common,
                            description="Embeds shards that arrived since the last run."),
        retrain.to_deployment(name="retrain", cron=RETRAIN_CRON, concurrency_limit=1, parameters=retrain_parameters,
                              description="Weekly train -> export -> promote."),
        embed.to_deployment(name="embed-on-promotion", parameters=common, triggers=[DeploymentEventTrigger(
            expect={PROMOTED_EVENT}, match={"prefect.resource.id": f"seqae.model.{name}"})],
            description="Re-embeds everything when a model is promoted."),
        embed.to_deployment(name="embed-on-arrival", parameters=common, triggers=[DeploymentEventTrigger(
            expect={SHARD_LANDED_EVENT}, match={"prefect.resource.id": "seqae.shard.*"},
            parameters={**common, "only": "{{ event.payload.path }}"})],
            description="Embeds the one shard a seqae.shard.landed event names."),
        retrain.to_deployment(name="retrain-on-drift", concurrency_limit=1, parameters=retrain_parameters,
                              triggers=[DeploymentEventTrigger(expect={DRIFT_EVENT},
                                                               match={"prefect.resource.id": f"seqae.model.{name}"})],
                              description="Retrains when newly embedded data drifted from the reference."),
    ]
    for deployment in served:
        deployment.enforce_parameter_schema = True
        forbid_credentials(deployment._parameter_openapi_schema.properties)  # the schema the API enforces
    return served


def serve_all(data: str, models: str, out: str, name: str = "default", drift_alpha: float | None = 0.01,
              train: TrainConfig | None = None) -> None:
    serve(*deployments(data, models, out, name, drift_alpha, train))
