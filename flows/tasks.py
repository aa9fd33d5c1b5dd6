"""Tasks: each calls one seqae function and adds retries (I/O only), caching, events and artifacts."""

from __future__ import annotations

import base64
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE, CacheKeyFnPolicy
from prefect.events import emit_event
from prefect.exceptions import MissingContextError
from prefect.tasks import exponential_backoff

from flows.credentials import apply_storage_credentials
from seqae import names
from seqae.config import DataConfig, EmbedConfig, ExportConfig, ModelConfig, TrainConfig
from seqae.data import resolve_shards
from seqae.drift import DriftPolicy
from seqae.errors import InputNotFoundError, SeqaeError, is_transient
from seqae.infer import EmbedReport, InferenceModel, ShardResult, embed_shard
from seqae.infer.commit import OutputFolder, reuse_key
from seqae.infer.job import prepare_embed, write_summary
from seqae.modeldir import ModelInfo
from seqae.registry import ModelRegistry
from seqae.storage import Location, redact_uri
from seqae.thresholds import Threshold, ThresholdConfig

PROMOTED_EVENT = "seqae.model.promoted"
SHARD_LANDED_EVENT = "seqae.shard.landed"
DRIFT_EVENT = "seqae.drift.detected"
DRIFT_SUPPRESSED_EVENT = "seqae.drift.suppressed"


def _log() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a run; the module's when a task runs through ``.fn``."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def retry_on_io_errors(task, task_run, state) -> bool:
    """Retry I/O errors only: a contract breach or a bad model fails at once."""
    exc = state.data if isinstance(state.data, BaseException) else None
    return exc is not None and is_transient(exc)


IO_RETRIES: dict[str, Any] = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=2),
                              "retry_jitter_factor": 0.5, "retry_condition_fn": retry_on_io_errors}


def _shard_key(context, parameters: dict[str, Any]) -> str:
    """Never stale: the shard's fingerprint, the model identity, the options and the committed
    output entry itself (``seqae.infer.commit.reuse_key``); a fresh key while nothing is committed."""
    config = parameters["config"]
    identity = InferenceModel.identity_of(parameters["model_dir"], config)
    shard = resolve_shards(parameters["shard"])[0]
    key = reuse_key(identity, shard, parameters["out"], parameters["output_name"], config.to_dict())
    return key or uuid.uuid4().hex


SHARD_CACHE = CacheKeyFnPolicy(cache_key_fn=_shard_key) + INPUTS + TASK_SOURCE



@task(name="train", timeout_seconds=24 * 3600)
def train_model(data: str, model_dir: str, model: ModelConfig, data_config: DataConfig,
                train: TrainConfig) -> dict[str, Any]:
    """Train and write ``model_dir``; artifacts: the metrics table and the loss curve."""
    from seqae.train import train as fit

    result = fit(data, model_dir, model_config=model, data_config=data_config, train_config=train)
    t = result.metadata["training"]
    create_table_artifact(key="seqae-training-metrics", description=f"Training of {model_dir}", table=[
        {"model_id": result.metadata["model_id"], "model_version": result.metadata["model_version"],
         "epochs": t["epochs"], "best_epoch": t["best_epoch"], "monitor": t["monitor"], "train_rows": t["train_rows"],
         "validation_rows": t["validation_rows"], "seconds": t["seconds"],
         **{k: round(v, 6) for k, v in t["metrics"].items()}}])
    plot = Location.of(str(result.model_dir)).join(names.LOSS_PLOT_FILE)  # a local path or a URI
    if plot.is_file():
        image = base64.b64encode(plot.read_bytes()).decode()
        shown = Path(plot.path).resolve() if plot.is_local else redact_uri(plot.uri)
        create_markdown_artifact(key="seqae-loss-curve", description="Training and validation loss per epoch",
                                 markdown=f"![loss curve](data:image/png;base64,{image})\n\n`{shown}`")
    return {"model_dir": str(result.model_dir), "model_id": result.metadata["model_id"],
            "model_version": result.metadata["model_version"], "epochs": t["epochs"], "metrics": t["metrics"]}


@task(name="export", timeout_seconds=3600)
def export_model(model_dir: str, config: ExportConfig) -> dict[str, Any]:
    """Export to ONNX behind the parity gate (a ``ParityError`` fails the task); artifact: the report."""
    from seqae.export import export

    result = export(model_dir, config)
    parity = result.parity
    create_table_artifact(key="seqae-parity-report", description=f"ONNX against Keras, {parity['rows']} rows, "
                          f"passed: {parity['passed']}", table=[
                              {"output": name, **worst} for name, worst in parity["worst"].items()])
    return {"model_dir": model_dir, "files": result.files, "parity_passed": parity["passed"]}


@task(name="fit-threshold", **IO_RETRIES)
def fit_threshold_task(model_dir: str, config: ThresholdConfig) -> dict[str, Any]:
    """Fit the anomaly threshold on the model's held-out reference (embed then writes score and is_anomaly)."""
    from seqae.anomaly import fit_threshold_from_reference

    fitted, note = fit_threshold_from_reference(model_dir, config)
    if fitted is None:
        _log().warning("%s", note)
        return {"threshold": None, "note": note}
    return {"threshold": fitted.threshold_, "method": fitted.method_, "false_alarm_rate": config.false_alarm_rate,
            "fitted_on": fitted.n_samples_, "note": note}


@task(name="check-drift", **IO_RETRIES)
def check_drift(model_dir: str, shards: dict[str, int], policy: DriftPolicy, models_root: str | None = None,
                model_name: str = names.DEFAULT_MODEL_NAME) -> dict[str, Any]:
    """The drift policy on the shards just embedded (``{shard: rows written}``): ``seqae.drift``
    decides whether a retrain is due and says why. Emits ``seqae.drift.detected`` when it is (a
    deployment trigger retrains on it) and ``seqae.drift.suppressed`` when the data drifted but no
    retrain is due (cooldown, episode already handled); the payload is the decision with its reasons.
    Artifact: the tests, with the decision."""
    from seqae.drift import DRIFT_NO_RETRAIN
    from seqae.drift import check_drift as decide_drift

    model_id = ModelInfo.read(model_dir).model_id
    decision = decide_drift(model_dir, model_id, shards, policy, models_root=models_root, name=model_name)
    report = decision.report
    table: list[dict[str, Any]] = []
    if report is not None:
        for compared in ("recon_error", "embedding"):
            table.append({"compared": compared, **{k: v for k, v in report[compared].items()}})
    create_markdown_artifact(key="seqae-drift", description=f"Drift of {len(shards)} shard(s): {decision.verdict}",
                             markdown=drift_markdown(decision.verdict, decision.reasons, table))
    payload = {k: v for k, v in decision.to_dict().items() if k != "report"} | {
        "model_dir": model_dir, "model_name": model_name,
        **({k: report[k] for k in ("alpha", "recon_error", "embedding")} if report else {})}
    resource = {"prefect.resource.id": f"seqae.model.{model_name}", "prefect.resource.name": model_name}
    if decision.retrain:
        emit_event(event=DRIFT_EVENT, resource=resource, payload=payload)
        _log().warning("drift: retrain requested (%s)", decision.why)
    elif decision.verdict == DRIFT_NO_RETRAIN:
        emit_event(event=DRIFT_SUPPRESSED_EVENT, resource=resource, payload=payload)
        _log().info("drift, no retrain: %s", decision.why)
    else:
        _log().info("drift check: %s (%s)", decision.verdict, decision.why)
    return decision.to_dict()


def drift_markdown(verdict: str, reasons: tuple[str, ...], table: list[dict[str, Any]]) -> str:
    """The drift artifact: the verdict, why, and one row per test."""
    lines = [f"**{verdict}**", "", *[f"- {reason}" for reason in reasons]]
    if table:
        columns = list(dict.fromkeys(k for row in table for k in row))
        lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in table]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|")


@task(name="promote", **IO_RETRIES)
def promote_model(models_root: str, name: str, model_dir: str) -> dict[str, Any]:
    """Make ``model_dir`` current for ``name`` (parity must have passed), then emit the event."""
    promotion = ModelRegistry(models_root).promote(model_dir, name)
    emit_event(event=PROMOTED_EVENT,
               resource={"prefect.resource.id": f"seqae.model.{name}", "prefect.resource.name": name},
               payload=promotion.to_dict())
    _log().info("promoted %s as %r (%s)", promotion.model_id, name, promotion.location)
    return promotion.to_dict()


@task(name="current-model", **IO_RETRIES)
def current_promotion(models_root: str, name: str) -> dict[str, Any] | None:
    """The registry's current promotion of ``name`` (None before the first)."""
    current = ModelRegistry(models_root).current(name)
    return None if current is None else current.to_dict()


@task(name="plan-shards", **IO_RETRIES)
def plan_shards(data: str, out: str, only: str | None = None) -> list[tuple[str, str]]:
    """``(shard URI, output name)`` for every input shard, or just ``only`` (one file under ``data``),
    after withdrawing outputs of renamed or deleted sources: ``seqae.infer.job.prepare_embed``, the
    planner ``embed`` uses. An empty data folder plans nothing (a scheduled run before the first shard)."""
    try:
        plan = prepare_embed(data, out, only)
    except InputNotFoundError:
        if only is None and Location.of(data).is_dir():
            return []
        raise
    return [(p.shard.uri, p.output) for p in plan.selected]


@task(name="tidy-output", **IO_RETRIES)
def tidy_output(out: str) -> list[str]:
    """Remove what killed writers left in the output folder (hidden temporary files), unless another
    run is writing there now (then they stay for a later run)."""
    return OutputFolder(out).tidy()


@task(name="embed-shard", cache_policy=SHARD_CACHE, **IO_RETRIES)
def embed_one(model_dir: str, shard: str, out: str, output_name: str, config: EmbedConfig) -> dict[str, Any]:
    """One shard through ``seqae.infer.embed_shard`` with the process's shared session.

    No task timeout: shard tasks run on worker threads (or Ray workers), where Prefect cannot
    interrupt them; the embed flow's own timeout bounds the run instead.
    """
    apply_storage_credentials()  # a Ray worker's own process: load them here too
    model = InferenceModel.shared(model_dir, config)
    result = embed_shard(model, shard, out, config, output_name=output_name).to_dict()
    # Where it ran and how many sessions that process has opened: one per worker, however many
    # shards it embedded, is the point of InferenceModel.shared (checked on Ray by the tests).
    worker = {"pid": os.getpid(), "host": socket.gethostname(), "sessions_opened": InferenceModel.sessions_opened()}
    node = ray_node_id()
    return {**result, "worker": worker if node is None else {**worker, "node": node}}


def ray_node_id() -> str | None:
    """The Ray node this process runs on when it is a Ray worker (None on the flow's own threads):
    several nodes may share one host, so the host name alone does not say which node ran a shard."""
    import sys

    ray = sys.modules.get("ray")  # imported by Ray itself in its workers; never imported here
    if ray is None or not ray.is_initialized():
        return None
    try:
        context = ray.get_runtime_context()
        return context.get_node_id() if context.worker.mode == ray.WORKER_MODE else None
    except Exception:  # a driver (the flow's own process) has no task context
        return None


@task(name="summarize-run", **IO_RETRIES)
def summarize_run(model_dir: str, data: str, out: str, config: EmbedConfig, results: list[dict[str, Any]],
                  failed: list[dict[str, str]], models_root: str | None = None,
                  model_name: str = names.DEFAULT_MODEL_NAME) -> dict[str, Any]:
    """``_manifest.json`` (counts reconciled) and the run's artifacts: the reconciliation table and
    where the embeddings are."""
    model = InferenceModel.shared(model_dir, config)
    fields = set(ShardResult.__dataclass_fields__)
    report = EmbedReport(out, model.scorer.provider, model.batch_size,
                         [ShardResult(**{k: v for k, v in r.items() if k in fields}) for r in results])
    write_summary(report, out, model.identity, data)
    ran = placement(results)
    table = [{"shard": r.shard, "output": r.output, "status": r.status, "rows_in": r.rows_in,
              "rows_written": r.rows_written, "rows_rejected": r.rows_rejected,
              "ran_on": _where(ran.get(r.shard))} for r in report.shards]
    table += [{"shard": f["shard"], "output": f["output"], "status": f"failed: {f['error']}", "rows_in": None,
               "rows_written": None, "rows_rejected": None, "ran_on": None} for f in failed]
    totals = report.totals
    create_table_artifact(key="seqae-embed-reconciliation", table=table, description=(
        f"{totals['shards']} shard(s): {totals['shards_done']} embedded, {totals['shards_skipped']} already done, "
        f"{len(failed)} failed; rows in {totals['rows_in']} = written {totals['rows_written']} + rejected "
        f"{totals['rows_rejected']}" + (f" + quarantined {totals['rows_quarantined']}"
                                        if totals.get("rows_quarantined") else "")))
    label = model_label(model.identity.model_id, models_root, model_name)
    publish_location(out, f"Embeddings of {label}")
    return {**report.to_dict(), "model_id": model.identity.model_id, "model": label, "failed": failed,
            "workers": worker_summary(results), "placement": ran}


def placement(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Where each shard this run embedded ran, by shard URI: host, pid and, on Ray, the node id
    (several Ray nodes may share a host)."""
    return {r["shard"]: {k: r["worker"][k] for k in ("node", "host", "pid") if k in r["worker"]}
            for r in results if r.get("worker")}


def _where(ran: dict[str, Any] | None) -> str | None:
    """One placement as the reconciliation table shows it: ``node 1a2b..., pid 42 on host``."""
    if not ran:
        return None
    return (f"node {ran['node']}, " if ran.get("node") else "") + f"pid {ran['pid']} on {ran['host']}"


def model_label(model_id: str, models_root: str | None, name: str) -> str:
    """``model <id>``, with its promotion from the registry when it has one: ``model <id>
    (promotion 3 of 'default', 2026-12-01T10:00:00Z)``."""
    if models_root is not None:
        try:
            history = ModelRegistry(models_root).history(name)
        except SeqaeError as exc:  # an unreadable history never fails a run that committed its outputs
            _log().warning("%s", exc)
            history = []
        for number, promotion in reversed(list(enumerate(history, start=1))):
            if promotion.model_id == model_id:
                return f"model {model_id} (promotion {number} of {name!r}, {promotion.promoted_at})"
    return f"model {model_id}"


def publish_location(out: str, title: str) -> None:
    """Where the outputs are, as an artifact a user can act on: a link for an http(s) location (a
    browser opens it); otherwise the path or URI as text to copy (a browser opens no ``file://``
    link from the UI), with the S3 console link for ``s3://``."""
    uri = redact_uri(Location.of(out).uri)
    if uri.startswith(("http://", "https://")):
        create_link_artifact(key="seqae-embeddings", link=uri, link_text=title)
        return
    lines = [f"**{title}**", "", f"`{uri}`", "", "Read the committed shards through the manifest "
             "(`seqae.infer.committed_outputs`): a data file without its entry is not committed."]
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        lines.append(f"[Open in the S3 console](https://s3.console.aws.amazon.com/s3/buckets/{bucket}"
                     f"?prefix={prefix.rstrip('/')}/) (AWS only; another endpoint has its own console).")
    create_markdown_artifact(key="seqae-embeddings", markdown="\n".join(lines), description=title)


def worker_summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The processes that ran shard tasks: host, pid, shards run, sessions that process opened."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for result in results:
        worker = result.get("worker")
        if not worker:
            continue
        entry = seen.setdefault((worker["host"], worker["pid"]), {**worker, "shards": 0})
        entry["shards"] += 1
        entry["sessions_opened"] = max(entry["sessions_opened"], worker["sessions_opened"])
    return sorted(seen.values(), key=lambda w: (w["host"], w["pid"]))


@task(name="evaluate", **IO_RETRIES)
def evaluate_outputs(out: str, label_column: str, normal_value: Any, model_dir: str | None = None) -> dict[str, Any] | None:
    """The reconstruction error against labels (``seqae.evaluate.score_labels``), when the outputs
    carry ``label_column``: ROC-AUC, PR-AUC and, where the model has a threshold, the scores at it.
    Artifact: one table per run, with the model id and the threshold."""
    from seqae.evaluate import has_column, score_labels

    if not has_column(out, label_column):
        _log().info("no %r column in the outputs: nothing to evaluate", label_column)
        return None
    result = score_labels(out, label_column, normal_value)
    if model_dir is not None:
        fitted = Threshold.load(model_dir)
        result = {"model_id": ModelInfo.read(model_dir).model_id,
                  "threshold": None if fitted is None or fitted.threshold_ is None else float(fitted.threshold_),
                  **result}
    keys = ("model_id", "threshold", "rows", "anomalous", "unlabelled", "roc_auc", "pr_auc", "precision", "recall",
            "f1_at_threshold", "precision_at_threshold", "recall_at_threshold", "undefined")
    create_table_artifact(key="seqae-evaluation", table=[{k: result[k] for k in keys if k in result}],
                          description=f"{result['score']} as an anomaly score against {label_column} != "
                                      f"{normal_value!r}, over every committed output of {redact_uri(out)}")
    return result
