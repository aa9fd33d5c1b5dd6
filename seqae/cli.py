"""The ``seqae`` command: a thin layer, one subcommand per library function.

Options are checked before any work starts; a ``SeqaeError`` ends the command with one line on
stderr and exit code 1 (2 for usage errors, as Typer does).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from seqae import names
from seqae._version import __version__
from seqae.errors import SeqaeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="seqae: LSTM sequence autoencoders on Parquet, exported to ONNX, run as batch jobs.")
datasets_app = typer.Typer(no_args_is_help=True, help="Write a bundled dataset as Parquet shards.")
app.add_typer(datasets_app, name="datasets")

console = Console(stderr=True)
_state = {"quiet": False}


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "rows") -> Iterator[Callable[[int], None]]:
    """A rich progress bar with counts, rate and ETA; a no-op with ``--quiet`` or when stderr is not a
    terminal (logs and CI output stay readable; the library logs progress at INFO level there)."""
    if _state["quiet"] or not console.is_terminal:
        yield lambda n, description=None: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(f"{unit}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=_state["quiet"], transient=False) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int, description: str | None = None) -> None:
            if description is not None:
                bar.update(task, description=description)
            bar.advance(task, n)
            t = bar.tasks[task]
            if t.speed:
                bar.update(task, rate=f"{t.speed:,.0f}/s")

        yield advance


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _local_path(value: str | None, what: str) -> Path | None:
    """``value`` as a local ``Path``; a URI is refused with one line (its credentials masked) where the
    command reads or writes local folders only, before any work: Typer's own ``Path`` would have
    made ``s3://KEY:SECRET@bucket/m`` the local folder ``s3:/KEY:SECRET@bucket/m``."""
    from seqae.storage import require_local

    return None if value is None else Path(require_local(value, what))


@app.callback()
def main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, warnings only.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)
    _state["quiet"] = quiet
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("tensorflow", "absl", "tf2onnx", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


@datasets_app.command("ucr-anomaly")
def datasets_ucr_anomaly(
    out: Annotated[str, typer.Option(help="Directory to write train/ and test/ into.")],
    overwrite: Annotated[bool, typer.Option(help="Replace Parquet files already there.")] = False,
) -> None:
    """UCR anomaly archive series 135 (InternalBleeding16), long layout: columns series, time, value,
    is_anomaly (1 on the labelled anomaly); train/ is steps 0..1199 (no anomaly), test/ the rest."""
    out = _local_path(out, "--out of seqae datasets")
    from seqae.datasets import write_long_dataset

    paths = write_long_dataset("ucr-anomaly", out, overwrite=overwrite)
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


class DatasetName(str, Enum):
    ecg5000 = "ecg5000"


@datasets_app.command("ecg5000")
def datasets_ecg5000(
    out: Annotated[str, typer.Option(help="Directory to write part-NNNNN.parquet files into.")],
    shards: Annotated[int, typer.Option(min=1, help="Number of shards.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace Parquet files already in OUT.")] = False,
) -> None:
    """ECG5000 (UCR archive): 5000 heartbeats x 140 steps; columns id, label (1 = normal), values."""
    out = _local_path(out, "--out of seqae datasets")
    from seqae.datasets import write_dataset

    paths = write_dataset("ecg5000", out, shards=shards, overwrite=overwrite)
    typer.echo(f"wrote {len(paths)} shard(s) of ECG5000 to {out}")


class SplitName(str, Enum):
    auto = "auto"
    key = "key"
    time = "time"


class LayoutName(str, Enum):
    sequence = "sequence"
    long = "long"


def data_config_from_options(layout: LayoutName, key_column: str, values_column: str, time_column: str,
                             feature_columns: Optional[str], window: Optional[int], stride: Optional[int],
                             min_length: int, max_length: Optional[int]):
    from seqae.data import DataConfig

    return DataConfig(
        layout=layout.value, key_column=key_column, values_column=values_column, time_column=time_column,
        feature_columns=tuple(c.strip() for c in feature_columns.split(",")) if feature_columns else None,
        window=window, stride=stride, min_length=min_length, max_length=max_length,
    )


LayoutOpt = Annotated[LayoutName, typer.Option(help="sequence: one row per sequence; long: one row per step.")]
KeyOpt = Annotated[str, typer.Option(help="Key column (series key in the long layout).")]
ValuesOpt = Annotated[str, typer.Option(help="List column holding the sequence (sequence layout).")]
TimeOpt = Annotated[str, typer.Option(help="Time column (long layout).")]
FeaturesOpt = Annotated[Optional[str], typer.Option(help="Comma-separated feature columns (long layout).")]
WindowOpt = Annotated[Optional[int], typer.Option(min=1, help="Steps per window (long layout).")]
StrideOpt = Annotated[Optional[int], typer.Option(min=1, help="Steps between windows (long layout; default: window).")]
MinLenOpt = Annotated[int, typer.Option(min=1, help="Reject sequences shorter than this.")]
MaxLenOpt = Annotated[Optional[int], typer.Option(min=1, help="Reject sequences longer than this.")]


@app.command("validate")
def validate_cmd(
    data: Annotated[str, typer.Option(help="Parquet file, directory, glob or URI.")],
    rejects_dir: Annotated[Optional[str], typer.Option(help="Write rejected rows to REJECTS_DIR/_rejects/.")] = None,
    filter: Annotated[Optional[str], typer.Option("--filter", help="Row filter, e.g. \"label == 1\".")] = None,
    layout: LayoutOpt = LayoutName.sequence,
    key_column: KeyOpt = "id",
    values_column: ValuesOpt = "values",
    time_column: TimeOpt = "time",
    feature_columns: FeaturesOpt = None,
    window: WindowOpt = None,
    stride: StrideOpt = None,
    min_length: MinLenOpt = 1,
    max_length: MaxLenOpt = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first file that breaks the contract.")] = False,
) -> None:
    """Check input shards against the data contract; print per-shard and total counts as JSON.

    Every file is checked; files that break the contract as a whole are listed (exit code 1)."""
    rejects_dir = _local_path(rejects_dir, "--rejects-dir of seqae validate")
    from seqae.scan import scan

    config = data_config_from_options(layout, key_column, values_column, time_column, feature_columns,
                                      window, stride, min_length, max_length)
    with progress_bar("validate", None) as advance:
        report = scan(data, config, row_filter=filter, rejects_dir=rejects_dir, on_rows=advance, fail_fast=fail_fast)
    _print_json({"shards": [s.to_dict() for s in report.shards], "totals": report.totals,
                 "reasons": report.reasons, "num_features": report.num_features, "longest": report.longest,
                 "bad_files": report.bad_files})
    if report.bad_files:
        for bad in report.bad_files:
            console.print(f"error: {bad['reason']}", markup=False, soft_wrap=True, highlight=False)
        if len(report.bad_files) > 1 or report.shards:
            console.print(f"error: {len(report.bad_files)} of {len(report.bad_files) + len(report.shards)} file(s) "
                          "break the contract as a whole", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(1)


class ModeName(str, Enum):
    reconstruct = "reconstruct"
    predict = "predict"
    composite = "composite"


class DecoderName(str, Enum):
    unconditioned = "unconditioned"
    state = "state"
    conditioned = "conditioned"


class ActivationName(str, Enum):
    tanh = "tanh"
    relu = "relu"


def _overrides(**options) -> dict:
    """The options the user actually gave (None means 'not given': the config file or default stands)."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in options.items() if v is not None}


@app.command("train")
def train_cmd(
    data: Annotated[str, typer.Option(help="Parquet file, directory, glob or URI.")],
    model_dir: Annotated[str, typer.Option(help="Model directory to write (replaced atomically).")],
    config: Annotated[Optional[str], typer.Option(help="JSON or TOML file with sections model, data, train.")] = None,
    mode: Annotated[Optional[ModeName], typer.Option(help="What the decoders learn.")] = None,
    horizon: Annotated[Optional[int], typer.Option(min=1, help="Steps to predict (predict, composite).")] = None,
    decoder: Annotated[Optional[DecoderName], typer.Option(help="Decoder kind.")] = None,
    reverse: Annotated[Optional[bool], typer.Option("--reverse/--no-reverse", help="Reconstruct in reverse order.")] = None,
    units: Annotated[Optional[int], typer.Option(min=1, help="LSTM units per layer.")] = None,
    latent_dim: Annotated[Optional[int], typer.Option(min=1, help="Embedding size (bottleneck).")] = None,
    layers: Annotated[Optional[int], typer.Option(min=1, help="Stacked LSTM layers.")] = None,
    dropout: Annotated[Optional[float], typer.Option(min=0.0, max=0.99, help="Dropout between layers.")] = None,
    activation: Annotated[Optional[ActivationName], typer.Option(help="LSTM activation (tanh keeps the GPU paths).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(min=0.0, help="Adam learning rate.")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Most epochs; early stopping usually ends sooner.")] = None,
    patience: Annotated[Optional[int], typer.Option(min=1, help="Epochs without improvement before stopping.")] = None,
    lr_patience: Annotated[Optional[int], typer.Option(min=1, help="Epochs without improvement before the learning rate is halved.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Sequences per step.")] = None,
    validation_fraction: Annotated[Optional[float], typer.Option(min=0.0, max=0.99, help="Share held out for validation.")] = None,
    validation_split: Annotated[Optional[SplitName], typer.Option(help="key: whole keys (series) by a seeded hash; time: the end of each series (long layout); auto: time for the long layout with few series, else key.")] = None,
    filter: Annotated[Optional[str], typer.Option("--filter", help="Train on matching rows, e.g. \"label == 1\".")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for split, shuffling and initialisation.")] = None,
    cache_mb: Annotated[Optional[int], typer.Option(min=0, help="Keep the decoded rows in memory when they fit this many MiB (0: read the shards every epoch).")] = None,
    layout: Annotated[Optional[LayoutName], typer.Option(help="sequence or long.")] = None,
    key_column: Annotated[Optional[str], typer.Option(help="Key column (series key in the long layout).")] = None,
    values_column: Annotated[Optional[str], typer.Option(help="List column (sequence layout).")] = None,
    time_column: Annotated[Optional[str], typer.Option(help="Time column (long layout).")] = None,
    feature_columns: FeaturesOpt = None,
    window: WindowOpt = None,
    stride: StrideOpt = None,
    max_length: MaxLenOpt = None,
) -> None:
    """Train an LSTM autoencoder on Parquet shards; print the effective config and the result as JSON."""
    model_dir = _local_path(model_dir, "--model-dir of seqae train")
    config = _local_path(config, "--config of seqae train")
    from seqae.config import DataConfig, ModelConfig, TrainConfig, load_config_file

    sections = load_config_file(config) if config else {}
    model_fields = {**sections.get("model", {}), **_overrides(
        mode=mode, horizon=horizon, decoder=decoder, reverse_target=reverse, units=units, latent_dim=latent_dim,
        num_layers=layers, dropout=dropout, activation=activation, learning_rate=learning_rate)}
    if model_fields.get("mode", "reconstruct") != "reconstruct" and "horizon" not in model_fields:
        raise typer.BadParameter("the predict and composite modes need --horizon", param_hint="--horizon")
    data_fields = {**sections.get("data", {}), **_overrides(
        layout=layout, key_column=key_column, values_column=values_column, time_column=time_column,
        feature_columns=tuple(c.strip() for c in feature_columns.split(",")) if feature_columns else None,
        window=window, stride=stride, max_length=max_length)}
    train_fields = {**sections.get("train", {}), **_overrides(
        max_epochs=epochs, patience=patience, lr_patience=lr_patience, batch_size=batch_size,
        validation_fraction=validation_fraction,
        validation_split=validation_split, row_filter=filter, seed=seed, cache_mb=cache_mb)}
    # Every option is checked before any data is read, without TensorFlow.
    data_config = DataConfig.from_dict(data_fields, "data options")
    train_config = TrainConfig.from_dict(train_fields, "train options")
    model_config = ModelConfig.from_dict(model_fields, "model options")
    effective = {"model": model_config.to_dict(), "data": data_config.to_dict(), "train": train_config.to_dict()}
    console.print_json(json.dumps(effective)) if not _state["quiet"] else None
    from seqae.train import train

    with progress_bar("train", train_config.max_epochs, unit="epochs") as advance:
        result = train(data, model_dir, model_config=model_config, data_config=data_config,
                       train_config=train_config, on_epoch=lambda epoch, logs: advance(1))
    t = result.metadata["training"]
    _print_json({"model_dir": str(result.model_dir), "model_id": result.metadata["model_id"],
                 "model_version": result.metadata["model_version"], "model": result.metadata["model"],
                 "epochs": t["epochs"], "best_epoch": t["best_epoch"], "metrics": t["metrics"],
                 "train_rows": t["train_rows"], "validation_rows": t["validation_rows"],
                 "validation": t["validation"], "warnings": t["warnings"], "seconds": t["seconds"]})


@app.command("export")
def export_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory written by `seqae train`.")],
    data: Annotated[Optional[str], typer.Option(help="Rows for the parity gate (default: the training data).")] = None,
    opset: Annotated[int, typer.Option(min=13, max=18, help="ONNX opset.")] = 17,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also write scorer.fp16.onnx for GPU serving.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also write scorer.int8.onnx (dynamic int8 weights, CPU), kept if it passes its parity.")] = False,
    embedding_atol: Annotated[float, typer.Option(min=0.0, help="Parity: absolute tolerance on embeddings.")] = 1e-4,
    error_rtol: Annotated[float, typer.Option(min=0.0, help="Parity: relative tolerance on errors.")] = 1e-4,
) -> None:
    """Write encoder.onnx and scorer.onnx next to the Keras model and check them against it."""
    model_dir = _local_path(model_dir, "MODEL_DIR of seqae export")
    from seqae.config import ExportConfig

    if not (model_dir / names.METADATA_FILE).is_file():
        raise typer.BadParameter(f"{model_dir} holds no {names.METADATA_FILE}", param_hint="MODEL_DIR")
    config = ExportConfig(opset=opset, fp16=fp16, int8=int8, embedding_atol=embedding_atol, error_rtol=error_rtol)
    from seqae.export import export

    result = export(model_dir, config, data=data)
    _print_json({"model_dir": str(model_dir), "files": result["files"], "parity": {
        k: v for k, v in result["parity"].items() if k in ("passed", "rows", "worst", "checks")},
        **({"fp16_parity": result["fp16_parity"]} if fp16 else {}),
        **({"int8_parity": result["int8_parity"]} if int8 else {})})


class DeviceName(str, Enum):
    auto = "auto"
    cuda = "cuda"
    cpu = "cpu"


@app.command("embed")
def embed_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory (a local path or a URI such as s3://bucket/model).")],
    data: Annotated[str, typer.Option(help="Parquet file, directory, glob or URI.")],
    out: Annotated[str, typer.Option(help="Output folder or URI (one Parquet file per input shard).")],
    device: Annotated[DeviceName, typer.Option(help="cuda fails without a usable GPU; auto falls back to the CPU.")] = DeviceName.auto,
    fp16: Annotated[bool, typer.Option("--fp16", help="Use scorer.fp16.onnx (CUDA only).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Use scorer.int8.onnx (CPU; seqae export --int8).")] = False,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Sequences per inference call (default per device).")] = None,
    read_batch_size: Annotated[int, typer.Option(min=1, help="Rows per Parquet record batch.")] = 16384,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Shards read and written at once (default: cores, at most 8).")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="CPU threads for onnxruntime.")] = None,
    step_errors: Annotated[bool, typer.Option("--step-errors", help="Also write step_error per valid step.")] = False,
    step_scores: Annotated[bool, typer.Option("--step-scores", help="Long layout: also write one row per series and time step (mean and max step error over the windows covering it) to OUT/_steps/.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Recompute shards already done.")] = False,
    allow_cpu_nodes: Annotated[bool, typer.Option("--allow-cpu-nodes", help="Warn, not fail, when heavy nodes leave the GPU.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first unusable input file instead of quarantining it.")] = False,
    max_length: Annotated[Optional[int], typer.Option(min=1, help="Reject longer sequences (default: the limit recorded at training).")] = None,
) -> None:
    """Write embeddings and reconstruction errors for every input shard; resumable and idempotent.

    An input file that cannot be used as a whole (unreadable, off contract) is quarantined: recorded
    under OUT/_rejects/_files/ with its reason while the other shards are processed; the command then
    exits 1 naming every such file.
    """
    from seqae.config import EmbedConfig
    from seqae.infer import embed
    from seqae.storage import Location

    where = Location.of(model)  # a URI that carries credentials is refused here, before any work
    shown = str(Path(model)) if where.is_local else where.uri
    if where.is_local and not where.is_dir():  # object stores have no folders, only keys below a prefix
        raise typer.BadParameter(f"{shown} does not exist or is not a folder", param_hint="--model")
    if not where.join(names.METADATA_FILE).is_file():
        raise typer.BadParameter(f"{shown} holds no {names.METADATA_FILE}", param_hint="--model")
    config = EmbedConfig(device=device.value, fp16=fp16, int8=int8, batch_size=batch_size, read_batch_size=read_batch_size,
                         workers=workers, threads=threads, step_errors=step_errors, step_scores=step_scores,
                         overwrite=overwrite, allow_cpu_nodes=allow_cpu_nodes, fail_fast=fail_fast)
    data_config = None
    if max_length is not None:
        import dataclasses

        from seqae.modeldir import ModelInfo

        data_config = dataclasses.replace(ModelInfo.read(model).data, max_length=max_length)
    total = _total_rows(data)
    shards_done = 0

    with progress_bar("embed", total, unit="rows") as advance:
        def on_progress(event: Progress) -> None:
            nonlocal shards_done
            shards_done += event.shards
            advance(event.rows, f"embed: {shards_done} shard(s) done" if event.shards else None)

        report = embed(model, data, out, config, on_progress=on_progress, data_config=data_config)
    result = report.to_dict()
    result["quarantined"] = [{"shard": s.shard, "reason": s.error} for s in report.quarantined]
    result.pop("shards")
    _print_json(result)
    _end_with_problems(report)


def _end_with_problems(report) -> None:
    """Exit 1 naming every quarantined file, or when every input row was rejected (nothing written)."""
    totals = report.totals
    if totals["rows_in"] and not totals["rows_written"] and not report.quarantined:
        console.print(f"error: every one of the {totals['rows_in']} input rows was rejected; nothing was written "
                      f"(reasons in {report.out}/_rejects/)", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(1)
    if report.quarantined:
        for shard in report.quarantined:
            console.print(f"error: {shard.error}", markup=False, soft_wrap=True, highlight=False)
        console.print(f"error: {len(report.quarantined)} input file(s) quarantined (recorded in "
                      f"{report.out}/_rejects/_files/); the other {totals['shards'] - len(report.quarantined)} "
                      "shard(s) are committed", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(1)


class MethodName(str, Enum):
    pot = "pot"
    percentile = "percentile"


@app.command("threshold")
def threshold_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory.")],
    data: Annotated[Optional[str], typer.Option(help="Rows to fit on (default: the model's held-out reference).")] = None,
    filter: Annotated[Optional[str], typer.Option("--filter", help="The normal rows of --data, e.g. \"label == 1\".")] = None,
    method: Annotated[MethodName, typer.Option(help="pot: generalized Pareto tail; percentile: empirical.")] = MethodName.pot,
    false_alarm_rate: Annotated[float, typer.Option(help="Share of normal rows that may be flagged.")] = 0.01,
    contamination: Annotated[float, typer.Option(help="Expected share of anomalies in the fitting rows.")] = 0.0,
    device: Annotated[DeviceName, typer.Option(help="Where to score --data.")] = DeviceName.auto,
) -> None:
    """Fit the anomaly threshold and store it with the model; embed then writes score and is_anomaly."""
    model = _local_path(model, "--model of seqae threshold")
    from seqae.thresholds import ThresholdConfig

    config = ThresholdConfig(method=method.value, false_alarm_rate=false_alarm_rate, contamination=contamination)
    from seqae.anomaly import fit_threshold

    fitted = fit_threshold(model, config, data=data, row_filter=filter, device=device.value)
    _print_json({"model": str(model), "threshold": fitted.threshold_, "method": method.value,
                 "false_alarm_rate": false_alarm_rate, "fitted_on": fitted.n_samples_, "tail": fitted.tail_,
                 "data": data or "the held-out reference"})


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory.")],
    data: Annotated[str, typer.Option(help="Labelled Parquet shards.")],
    out: Annotated[str, typer.Option(help="Folder for report.json, report.md and the plots.")] = "evaluation",
    label_column: Annotated[str, typer.Option(help="The label column (passed through by the contract).")] = "label",
    normal_value: Annotated[str, typer.Option(help="The label of normal rows (numbers are read as numbers).")] = "1",
    filter: Annotated[Optional[str], typer.Option("--filter", help="Evaluate matching rows only.")] = None,
    probe: Annotated[Optional[str], typer.Option(help="Linear probe: its training rows, e.g. \"id < 500\".")] = None,
    device: Annotated[DeviceName, typer.Option(help="Where to score.")] = DeviceName.auto,
) -> None:
    """ROC-AUC, PR-AUC, F1 at the stored threshold, plots and (with --probe) a linear probe."""
    model = _local_path(model, "--model of seqae evaluate")
    out = _local_path(out, "--out of seqae evaluate")
    from seqae.evaluate import evaluate

    report = evaluate(model, data, out, label_column=label_column, normal_value=_literal(normal_value),
                      row_filter=filter, probe_train=probe, device=device.value)
    _print_json({k: v for k, v in report.items() if k != "plots"} | {"report": str(out / "report.md")})


@app.command("drift")
def drift_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory.")],
    data: Annotated[str, typer.Option(help="New Parquet shards to compare with the model's reference.")],
    filter: Annotated[Optional[str], typer.Option("--filter", help="Compare matching rows only.")] = None,
    alpha: Annotated[float, typer.Option(min=1e-9, max=0.5, help="Significance level of the tests.")] = 0.01,
    device: Annotated[DeviceName, typer.Option(help="Where to score.")] = DeviceName.auto,
) -> None:
    """Compare errors and embeddings of new data with the held-out reference (KS tests); exit 3 on drift."""
    model = _local_path(model, "--model of seqae drift")
    from seqae.anomaly import drift

    report = drift(model, data, row_filter=filter, alpha=alpha, device=device.value)
    _print_json(report)
    if report["drifted"]:
        raise typer.Exit(3)


def _literal(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _total_rows(data: str) -> int | None:
    """Rows in all shards, from the Parquet footers only (cheap); None if a footer cannot be read."""
    import pyarrow.parquet as pq

    from seqae.data import resolve_shards

    try:
        return sum(pq.ParquetFile(s.open()).metadata.num_rows for s in resolve_shards(data))
    except Exception:
        return None


def main() -> None:
    """Console entry point: run the app, turning seqae errors into one line and exit code 1."""
    try:
        code = app(standalone_mode=False)
    except SeqaeError as exc:
        console.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
        code = 1
    except OSError as exc:  # a read-only or full disk, a vanished file: the system's own words, one line
        console.print(f"error: {' '.join(str(exc).split())}", highlight=False, soft_wrap=True, markup=False)
        code = 1
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxconverter_common",
                                                  "matplotlib"):
            raise
        # The inference install has no TensorFlow; train and export need the `train` extra.
        console.print(f"error: this command needs {exc.name}, which is not installed; "
                      "install the training extra: pip install 'seqae[train]'", markup=False, soft_wrap=True)
        code = 1
    except typer.Abort:
        console.print("aborted", markup=False)
        code = 130
    except typer.TyperException as exc:  # usage errors: Typer's message, exit code 2
        exc.show()
        code = exc.exit_code
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
