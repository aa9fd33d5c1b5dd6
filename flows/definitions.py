"""The flows users run: train, export, embed, retrain (train -> export -> promote) and the pipeline.

Entrypoints for ``prefect.yaml``: ``flows/definitions.py:<function>``. Parameters are typed with seqae's
config dataclasses, so the UI shows every option and validates it (unknown keys are refused).
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run

from flows.concurrency import SlotBusy, embed_slot_name, one_at_a_time, retrain_slot_name
from flows.credentials import apply_storage_credentials
from flows.runners import ray_client_connection, resolve_ray_address, shard_resources, shard_task_runner
from flows.tasks import (
    check_drift,
    current_promotion,
    embed_one,
    evaluate_outputs,
    export_model,
    fit_threshold_task,
    plan_shards,
    promote_model,
    summarize_run,
    tidy_output,
    train_model,
)
from seqae import names
from seqae.config import DataConfig, EmbedConfig, ExportConfig, ModelConfig, TrainConfig
from seqae.drift import DriftPolicy, record_retrain, retrain_needed
from seqae.registry import ModelRegistry
from seqae.thresholds import ThresholdConfig

HOUR = 3600


@flow(name="seqae-train", timeout_seconds=24 * HOUR)
def train(data: str, model_dir: str, model: ModelConfig = ModelConfig(), data_config: DataConfig = DataConfig(),
          train: TrainConfig = TrainConfig()) -> dict[str, Any]:
    """Train an LSTM autoencoder on the Parquet shards at ``data`` into ``model_dir``."""
    return train_model(data, model_dir, model, data_config, train)


@flow(name="seqae-export", timeout_seconds=HOUR)
def export(model_dir: str, config: ExportConfig = ExportConfig()) -> dict[str, Any]:
    """Write the ONNX encoder and scorer and gate them on parity with Keras."""
    return export_model(model_dir, config)


@flow(name="seqae-retrain", timeout_seconds=25 * HOUR)
def retrain(data: str, models_root: str, model_name: str = names.DEFAULT_MODEL_NAME, model: ModelConfig = ModelConfig(),
            data_config: DataConfig = DataConfig(), train: TrainConfig = TrainConfig(),
            export_config: ExportConfig = ExportConfig(), threshold: ThresholdConfig = ThresholdConfig(),
            drift_episode: str | None = None, drift_model_id: str | None = None) -> dict[str, Any]:
    """Train -> export -> fit the threshold -> promote: the new model becomes current only if its
    parity gate passed, and its promotion emits ``seqae.model.promoted`` (which re-embeds through a
    trigger). ``models_root`` is a local folder or a URI (``s3://bucket/models``): the run trains in
    ``<models_root>/<name>/staging/<flow run id>/`` there (staged on the local disk, uploaded with
    ``seqae.json`` last), and the registry and the drift state live there too.

    One retrain of ``model_name`` runs at a time (a global concurrency slot). A retrain triggered by
    drift (``drift_episode``, ``drift_model_id``: from the event) first checks that it is still
    needed once it holds the slot: not when its episode was already handled or is over, nor when
    another model was promoted since the drift was found; then it ends Completed saying why.
    """
    logger = get_run_logger()
    with one_at_a_time(retrain_slot_name(model_name), None):
        needed, why = retrain_needed(models_root, model_name, drift_episode or None, drift_model_id or None,
                                     (current_promotion(models_root, model_name) or {}).get("model_id"))
        if not needed:
            logger.info("retrain of %r not needed: %s", model_name, why)
            return {"status": "not needed", "reason": why}
        logger.info("retraining %r: %s", model_name, why)
        staging = str(ModelRegistry(models_root).staging_dir(model_name, str(flow_run.id or uuid.uuid4())))
        trained = train_model(data, staging, model, data_config, train)
        export_model(trained["model_dir"], export_config)
        fit_threshold_task(trained["model_dir"], threshold)
        promotion = promote_model(models_root, model_name, trained["model_dir"])
        record_retrain(models_root, model_name, drift_episode or None, promotion["model_id"])
        return promotion


@flow(name="seqae-embed", timeout_seconds=12 * HOUR)
def embed(data: str, out: str, models_root: str | None = None, model_name: str = names.DEFAULT_MODEL_NAME,
          model_dir: str | None = None, only: str | None = None, config: EmbedConfig = EmbedConfig(),
          concurrency: int = 4, drift: DriftPolicy | None = DriftPolicy(), ray_address: str | None = None,
          wait_seconds: float | None = None, label_column: str | None = None,
          normal_value: Any = None) -> dict[str, Any]:
    """Embed the shards at ``data`` into ``out``: one task per shard, at most ``concurrency`` at once.

    One embed run writes to ``out`` at a time (a global concurrency slot per output folder): another
    waits up to ``wait_seconds`` (None: as long as the flow's timeout allows; 0: not at all) and
    then plans, so it skips what the first committed; one that waited in vain ends Completed
    saying so. The model is ``model_dir`` or, without one, the current model ``model_name`` of
    ``models_root``, read when the slot is held (before any promotion, the run ends Completed
    saying so). Shards already committed for the same model and input are skipped, so a scheduled
    run embeds what arrived since the last one; ``only`` embeds one shard (a path under ``data``,
    as an upload event names it). A shard that keeps failing fails alone: the others are committed,
    the run then fails naming it. The shards this run embedded are then checked for drift under the
    policy ``drift`` (``seqae.drift``; None skips it), which emits ``seqae.drift.detected`` when a
    retrain is due, and evaluated against ``label_column`` (when given and the outputs carry it).

    The shard tasks run on threads in this process, or on Ray when ``ray_address`` (or the
    ``SEQAE_RAY_ADDRESS`` environment variable) is set: ``"local"`` starts a Ray runtime here,
    ``ray://head:10001`` uses a cluster (``flows/runners.py``). On Ray each task asks for one GPU when
    the model runs on CUDA, and each worker process opens the model once for all its shards; the
    summary's ``placement`` (and the reconciliation table) says which node and process ran each shard.

    ``data``, ``out``, ``models_root`` and ``model_dir`` are local paths or URIs alike
    (``s3://bucket/...``): with all of them on an object store, nothing is shared between the
    flow's process and the Ray workers but the store.
    """
    apply_storage_credentials()  # SEQAE_STORAGE_SECRET_BLOCK: for the tasks on this process's threads
    if model_dir is None and models_root is None:
        raise ValueError("embed: give model_dir, or models_root (and model_name) to use the promoted model")
    logger = get_run_logger()
    try:
        with one_at_a_time(embed_slot_name(out), wait_seconds):
            return _embed_holding_the_slot(data, out, models_root, model_name, model_dir, only, config, concurrency,
                                           drift, ray_address, label_column, normal_value)
    except SlotBusy as busy:
        logger.info("nothing done: another embed run is writing to %s (%s); what it leaves is embedded by the next "
                    "run", out, busy)
        return {"status": "busy", "out": out}


def _embed_holding_the_slot(data: str, out: str, models_root: str | None, model_name: str, model_dir: str | None,
                            only: str | None, config: EmbedConfig, concurrency: int, drift: DriftPolicy | None,
                            ray_address: str | None, label_column: str | None, normal_value: Any) -> dict[str, Any]:
    logger = get_run_logger()
    promotion = None
    if model_dir is None:
        if models_root is None:
            raise ValueError("embed: give model_dir, or models_root to embed with the promoted model")
        promotion = current_promotion(models_root, model_name)
        if promotion is None:
            logger.info("nothing to do: no model promoted under %r in %s yet (run the retrain deployment, or "
                        "python -m flows promote)", model_name, models_root)
            return {"status": "no model", "out": out}
        model_dir = promotion["location"]
    address = resolve_ray_address(ray_address)
    runner: Any
    runner, most = shard_task_runner(address)
    concurrency = max(1, min(int(concurrency), most))
    tidy_output(out)
    planned = plan_shards(data, out, only)
    if not planned:
        logger.info("nothing to do: no shard in %s yet", data)
        return {"status": "no shard", "out": out}
    progress: Any = create_progress_artifact(progress=0.0, key="seqae-embed-progress",
                                        description=f"{len(planned)} shard(s) to {out}")
    with ray_client_connection(runner):
        results, failed = embed_shards.with_options(task_runner=runner)(model_dir, out, planned, config, concurrency,
                                                                         address is not None, progress)
    summary = summarize_run(model_dir, data, out, config, results, failed, models_root, model_name)
    nodes = Counter(where["node"] for where in summary["placement"].values() if where.get("node"))
    if nodes:  # which Ray node ran which shard: summary["placement"], and the reconciliation table
        logger.info("shard tasks ran on %d Ray node(s): %s", len(nodes),
                    ", ".join(f"{node} ({n} shard(s))" for node, n in sorted(nodes.items())))
    done = {r["shard"]: r["rows_written"] for r in results if r["status"] == "done"}
    if drift is not None and done:
        summary["drift"] = check_drift(model_dir, done, drift, models_root, model_name)
    if label_column and done:  # what the outputs say changed only when this run committed some
        summary["evaluation"] = evaluate_outputs(out, label_column, normal_value, model_dir)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(planned)} shard(s) failed (the others are committed): "
                           + "; ".join(f"{f['shard']}: {f['error']}" for f in failed))
    totals = summary["totals"]
    if totals["shards_done"] == 0 and not totals.get("shards_quarantined"):
        logger.info("nothing new: %d shard(s) of %s already embedded with model %s", totals["shards"], data,
                    summary["model_id"])
    else:
        new = [r for r in results if r["status"] == "done"]
        logger.info("embedded %d new shard(s): %d row(s) written, %d rejected", len(new),
                    sum(r["rows_written"] for r in new), sum(r["rows_rejected"] for r in new))
    return summary


@flow(name="seqae-embed-shards", timeout_seconds=12 * HOUR)
def embed_shards(model_dir: str, out: str, planned: list[tuple[str, str]], config: EmbedConfig = EmbedConfig(),
                 concurrency: int = 4, on_ray: bool = False,
                 progress: uuid.UUID | None = None) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """One ``embed-shard`` task per planned shard on this flow's task runner (threads or Ray; the
    embed flow picks it), at most ``concurrency`` in flight. Returns the results and the failures;
    updates the progress artifact ``progress`` (the embed run's own, where a user looks).

    Task timeouts are enforced neither on threads nor on Ray workers: this flow's timeout bounds the run.
    """
    pending: deque[tuple[str, str, PrefectFuture]] = deque()
    results: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []

    def collect() -> None:
        shard, name, future = pending.popleft()
        try:
            results.append(future.result())
        except Exception as exc:  # after its retries (or a Ray worker that died): this shard only
            failed.append({"shard": shard, "output": name, "error": f"{type(exc).__name__}: {exc}"})
        if progress is not None:
            update_progress_artifact(progress, progress=100.0 * (len(results) + len(failed)) / max(len(planned), 1))

    with shard_resources(config.device, on_ray):
        for shard, name in planned:
            pending.append((shard, name, embed_one.submit(model_dir, shard, out, name, config)))
            while len(pending) >= concurrency:
                collect()
    while pending:
        collect()
    return results, failed


@flow(name="seqae-pipeline", timeout_seconds=37 * HOUR)
def pipeline(data: str, models_root: str, out: str, model_name: str = names.DEFAULT_MODEL_NAME,
             model: ModelConfig = ModelConfig(), data_config: DataConfig = DataConfig(),
             train: TrainConfig = TrainConfig(), export_config: ExportConfig = ExportConfig(),
             embed_config: EmbedConfig = EmbedConfig(), threshold: ThresholdConfig = ThresholdConfig(),
             label_column: str | None = "label", normal_value: Any = 1) -> dict[str, Any]:
    """Train -> export -> threshold -> promote -> embed -> evaluate (when the outputs carry ``label_column``)."""
    promotion = retrain(data, models_root, model_name, model, data_config, train, export_config, threshold)
    summary = embed(data, out, model_dir=promotion["location"], config=embed_config, drift=None,
                    label_column=label_column, normal_value=normal_value)
    return {"promotion": promotion, "embed": summary["totals"], "evaluation": summary.get("evaluation")}
