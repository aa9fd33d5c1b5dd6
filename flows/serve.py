"""Every deployment of ``flows/deployments.py`` served from one process (``python -m flows serve``):
the same declaration ``prefect.yaml`` is rendered from (its names, schedules and triggers are listed
there and in docs/orchestration.md).

Schedules and triggers need a Prefect server (``PREFECT_API_URL``); stopping ``serve`` pauses the
deployments.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import serve

from flows.deployments import EMBED_CRON, RETRAIN_CRON, DeploymentSettings, to_runner_deployments
from seqae import names
from seqae.storage import refuse_credentials

__all__ = ["EMBED_CRON", "RETRAIN_CRON", "deployments", "serve_all"]

log = logging.getLogger(__name__)


def deployments(data: str, models: str, out: str, name: str = names.DEFAULT_MODEL_NAME, **settings: Any) -> list:
    """Every deployment for these locations; ``settings`` are the other fields of
    ``flows.deployments.DeploymentSettings`` (``row_filter``, ``max_epochs``, ``drift``, ...).

    Each location is a local path or a URI (``s3://bucket/models``: the registry and the drift state
    live there as well as on a local disk). Each deployment's parameter schema refuses credentials in
    its path parameters, and the API enforces it: a run whose ``only`` (an event's path) or any other
    location carries a secret is refused before it is created, so the secret is never stored as a
    run parameter. ``data``, ``out`` and ``models`` themselves are checked here.

    Raises:
        SeqaeError: a location carries credentials.
    """
    for location in (data, out, models):
        refuse_credentials(location)
    return to_runner_deployments(DeploymentSettings(data, models, out, name, **settings))


def serve_all(settings: DeploymentSettings) -> None:
    if settings.row_filter is None:
        log.warning("the retrain deployments train on every row (no --filter): a retrain after drift learns the "
                    "drifted rows and the anomalies as normal")
    serve(*deployments(settings.data, settings.models, settings.out, settings.name,
                       **{f: getattr(settings, f) for f in ("row_filter", "max_epochs", "drift", "label_column",
                                                             "normal_value")}))
