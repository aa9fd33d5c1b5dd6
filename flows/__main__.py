"""``python -m flows``: run the pipeline in-process, serve the deployments, emit events."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from seqae import names
from seqae.errors import SeqaeError
from seqae.storage import redact_text, refuse_credentials

DataOpt = Annotated[str, typer.Option(help="Parquet shards (path or URI).")]
ModelsOpt = Annotated[str, typer.Option(help="Models root, path or URI (the registry of promoted models and "
                                                   "the drift state).")]
OutOpt = Annotated[str, typer.Option(help="Output folder or URI for the embeddings.")]
NameOpt = Annotated[str, typer.Option(help="Model name in the registry.")]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="seqae's Prefect flows: run them, serve them, trigger them.")


@app.command("pipeline")
def pipeline_cmd(
    data: DataOpt,
    models: ModelsOpt,
    out: OutOpt,
    name: NameOpt = names.DEFAULT_MODEL_NAME,
    filter: Annotated[Optional[str], typer.Option("--filter", help="Train on matching rows, e.g. \"label == 1\".")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Most epochs (default: the TrainConfig default).")] = None,
    label_column: Annotated[str, typer.Option(help="Evaluate against this column when the outputs have it.")] = "label",
    normal_value: Annotated[int, typer.Option(help="The label of normal rows.")] = 1,
) -> None:
    """Train -> export -> promote -> embed -> evaluate, in this process (no server needed)."""
    _check_locations(data=data, out=out, models=models)
    from flows.definitions import pipeline
    from seqae.config import TrainConfig

    train = TrainConfig(row_filter=filter) if epochs is None else TrainConfig(row_filter=filter, max_epochs=epochs)
    result = pipeline(data, models, out, name, train=train, label_column=label_column, normal_value=normal_value)
    typer.echo(json.dumps(result, indent=2, default=str))


FilterOpt = Annotated[Optional[str], typer.Option("--filter", help="What the retrain deployments train on, e.g. "
                                                   "\"label == 1\" (the normal rows).")]
EpochsOpt = Annotated[Optional[int], typer.Option(min=1, help="Most epochs of the retrain deployments.")]
DriftAlphaOpt = Annotated[Optional[float], typer.Option(min=0, max=0.5, help="Drift test level after the embeds of "
                                                        "new shards; 0 turns the check off.")]
DriftRowsOpt = Annotated[Optional[int], typer.Option(min=1, help="Rows a drift test needs (smaller shards wait for "
                                                     "more).")]
DriftEffectOpt = Annotated[Optional[float], typer.Option(min=0, max=1, help="Smallest recon_error KS statistic that "
                                                         "counts as drift.")]
DriftCooldownOpt = Annotated[Optional[float], typer.Option(min=0, help="Seconds after a drift retrain in which drift "
                                                           "requests none.")]
LabelOpt = Annotated[Optional[str], typer.Option(help="Evaluate each embed run against this column.")]
NormalOpt = Annotated[Optional[str], typer.Option(help="The label of normal rows (with --label-column).")]


def _settings(base, *, name, filter, epochs, drift_alpha, drift_min_rows, drift_min_effect, drift_cooldown,
              label_column, normal_value, **locations):
    """``base`` (a ``DeploymentSettings``) with the options given on the command line."""
    import dataclasses

    from flows.deployments import settings_with
    from seqae.drift import DriftPolicy

    drift = base.drift
    if drift_alpha == 0:
        drift = None
    else:
        changes = {k: v for k, v in {"alpha": drift_alpha, "min_rows": drift_min_rows, "min_effect": drift_min_effect,
                                     "cooldown_seconds": drift_cooldown}.items() if v is not None}
        if changes:
            drift = dataclasses.replace(drift or DriftPolicy(), **changes)
    settings = settings_with(base, name=name, row_filter=filter, max_epochs=epochs, label_column=label_column,
                             normal_value=_scalar(normal_value), **locations)
    return dataclasses.replace(settings, drift=drift)


def _scalar(text: str | None):
    """``--normal-value`` as the label type it most likely is: an integer, a number, else the text."""
    if text is None:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@app.command("serve")
def serve_cmd(
    data: DataOpt,
    models: ModelsOpt,
    out: OutOpt,
    name: NameOpt = names.DEFAULT_MODEL_NAME,
    drift_alpha: DriftAlphaOpt = None,
    drift_min_rows: DriftRowsOpt = None,
    drift_min_effect: DriftEffectOpt = None,
    drift_cooldown: DriftCooldownOpt = None,
    filter: FilterOpt = None,
    epochs: EpochsOpt = None,
    label_column: LabelOpt = None,
    normal_value: NormalOpt = None,
) -> None:
    """Serve every deployment of flows/deployments.py in this process (needs a Prefect server: PREFECT_API_URL)."""
    _check_locations(data=data, out=out, models=models)
    from flows.deployments import DeploymentSettings
    from flows.serve import serve_all

    serve_all(_settings(DeploymentSettings(data, models, out), name=name, filter=filter, epochs=epochs,
                        drift_alpha=drift_alpha, drift_min_rows=drift_min_rows, drift_min_effect=drift_min_effect,
                        drift_cooldown=drift_cooldown, label_column=label_column, normal_value=normal_value))


@app.command("deployments")
def deployments_cmd(
    write: Annotated[Optional[str], typer.Option(help="Write prefect.yaml here (default: print it).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Parquet shards (default: $SEQAE_DATA at deploy time).")] = None,
    models: Annotated[Optional[str], typer.Option(help="Models root (default: $SEQAE_MODELS at deploy time).")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder (default: $SEQAE_OUT at deploy time).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Model name in the registry.")] = None,
    drift_alpha: DriftAlphaOpt = None,
    drift_min_rows: DriftRowsOpt = None,
    drift_min_effect: DriftEffectOpt = None,
    drift_cooldown: DriftCooldownOpt = None,
    filter: FilterOpt = None,
    epochs: EpochsOpt = None,
    label_column: LabelOpt = None,
    normal_value: NormalOpt = None,
) -> None:
    """Render prefect.yaml from flows/deployments.py (the checked-in file is this without options)."""
    from flows.deployments import PROJECT, render_yaml
    from seqae.storage import write_bytes

    for option, value in {"data": data, "out": out, "models": models}.items():
        if value is not None:
            _check_locations(**{option: value})
    text = render_yaml(_settings(PROJECT, name=name, filter=filter, epochs=epochs, drift_alpha=drift_alpha,
                                 drift_min_rows=drift_min_rows, drift_min_effect=drift_min_effect,
                                 drift_cooldown=drift_cooldown, label_column=label_column, normal_value=normal_value,
                                 data=data, models=models, out=out))
    if write is None:
        typer.echo(text, nl=False)
    else:
        write_bytes(write, text.encode())
        typer.echo(f"wrote {write}")


@app.command("promote")
def promote_cmd(
    model_dir: Annotated[str, typer.Argument(help="An exported model directory whose parity gate passed.")],
    models: ModelsOpt,
    name: NameOpt = names.DEFAULT_MODEL_NAME,
) -> None:
    """Promote a model by hand and emit seqae.model.promoted (embed-on-promotion re-embeds); needs
    the Prefect server (PREFECT_API_URL). Without one: seqae registry promote."""
    _check_locations(models=models, model_dir=model_dir)
    if not _prefect_api_url():  # Prefect would start a temporary server that no deployment listens to
        raise SeqaeError("python -m flows promote emits seqae.model.promoted to the Prefect server, and no "
                         "PREFECT_API_URL is set: set it (prefect config set PREFECT_API_URL=...), or promote "
                         f"without the event: seqae registry promote {model_dir} --models {models} --name {name}")
    from flows.tasks import promote_model

    typer.echo(json.dumps(promote_model.fn(models, name, model_dir), indent=2))


@app.command("emit-shard-landed")
def emit_shard_landed_cmd(
    path: Annotated[str, typer.Argument(help="The Parquet file that arrived.")],
    data: Annotated[str, typer.Option(envvar="SEQAE_DATA", help="The data root the deployments embed "
                                      "(default: $SEQAE_DATA); PATH must be a Parquet file inside it.")],
) -> None:
    """Emit seqae.shard.landed for one shard (what an upload hook runs)."""
    check_landed_shard(path, data)
    from flows.events import emit_shard_landed

    typer.echo(json.dumps(emit_shard_landed(path)))


def check_landed_shard(path: str, data: str) -> None:
    """Refuse, before any event is emitted, a path that is not a Parquet data file inside ``data``:
    checked on the text first (``seqae.storage.within``), then its name (``.parquet``, ``.parq``,
    ``.pq``; no ``_`` or ``.`` names, which the embed flow skips), then its Parquet magic bytes."""
    from seqae.data.source import PARQUET_SUFFIXES
    from seqae.storage import has_magic, redact_uri, within

    shard = within(path, data)
    shown = redact_uri(path)
    if not shard.name.lower().endswith(PARQUET_SUFFIXES) or shard.name.startswith(("_", ".")):
        raise SeqaeError(f"{shown}: expected a Parquet data file ({', '.join(PARQUET_SUFFIXES)}, a name not starting "
                         f"with _ or .), found the name {shard.name!r}")
    if not shard.is_file():
        raise SeqaeError(f"{shown}: expected a Parquet file, found no file there")
    if not has_magic(shard, b"PAR1"):
        raise SeqaeError(f"{shown}: expected a Parquet file, found no Parquet magic bytes (PAR1) at its start and end")


def _prefect_api_url() -> str | None:
    """The Prefect API this process would talk to (environment or profile), None without one."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _check_locations(**locations: str) -> None:
    """Refuse credentials in any location (a local path or a URI: the data, the outputs, the models
    root and a model directory all take both) before a flow run, and its parameters, is created."""
    for value in locations.values():
        refuse_credentials(value)


def main() -> None:
    """Run the app; a seqae error or a refused value ends it with one line on stderr and exit code 2
    (an operating-system error: one line and exit code 1), never a traceback."""
    try:
        app()
    except (SeqaeError, ValueError) as exc:
        # seqae's own messages are masked where they are made; anything else may quote a URI whole
        line = " ".join(str(exc).split()) if isinstance(exc, SeqaeError) else redact_text(str(exc))
        typer.echo(f"error: {line}", err=True)
        sys.exit(2)
    except OSError as exc:  # a read-only or full disk, an unreachable store: the system's own words
        typer.echo(f"error: {redact_text(str(exc))}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
