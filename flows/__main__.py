"""``python -m flows``: run the pipeline in-process, serve the deployments, emit events."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

DataOpt = Annotated[str, typer.Option(help="Parquet shards (path or URI).")]
ModelsOpt = Annotated[str, typer.Option(help="Models root (the registry of promoted models).")]
OutOpt = Annotated[str, typer.Option(help="Output folder or URI for the embeddings.")]
NameOpt = Annotated[str, typer.Option(help="Model name in the registry.")]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="seqae's Prefect flows: run them, serve them, trigger them.")


@app.command("pipeline")
def pipeline_cmd(
    data: DataOpt,
    models: ModelsOpt,
    out: OutOpt,
    name: NameOpt = "default",
    filter: Annotated[Optional[str], typer.Option("--filter", help="Train on matching rows, e.g. \"label == 1\".")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Most epochs (default: the TrainConfig default).")] = None,
    label_column: Annotated[str, typer.Option(help="Evaluate against this column when the outputs have it.")] = "label",
    normal_value: Annotated[int, typer.Option(help="The label of normal rows.")] = 1,
) -> None:
    """Train -> export -> promote -> embed -> evaluate, in this process (no server needed)."""
    from flows.definitions import pipeline
    from seqae.config import TrainConfig

    train = TrainConfig(row_filter=filter, **({"max_epochs": epochs} if epochs else {}))
    result = pipeline(data, models, out, name, train=train, label_column=label_column, normal_value=normal_value)
    typer.echo(json.dumps(result, indent=2, default=str))


@app.command("serve")
def serve_cmd(
    data: DataOpt,
    models: ModelsOpt,
    out: OutOpt,
    name: NameOpt = "default",
    drift_alpha: Annotated[float, typer.Option(help="Drift test level after each embed run; 0 turns the check off.")] = 0.01,
    filter: Annotated[Optional[str], typer.Option("--filter", help="What the retrain deployments train on, e.g. \"label == 1\".")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Most epochs of the retrain deployments.")] = None,
) -> None:
    """Serve every deployment in this process (needs a Prefect server: PREFECT_API_URL)."""
    from flows.serve import serve_all
    from seqae.config import TrainConfig

    train = TrainConfig(row_filter=filter, **({"max_epochs": epochs} if epochs else {})) if filter or epochs else None
    serve_all(data, models, out, name, drift_alpha or None, train)


@app.command("promote")
def promote_cmd(
    model_dir: Annotated[str, typer.Argument(help="An exported model directory whose parity gate passed.")],
    models: ModelsOpt,
    name: NameOpt = "default",
) -> None:
    """Promote a model by hand and emit seqae.model.promoted (embed-on-promotion re-embeds)."""
    from flows.tasks import promote_model

    typer.echo(json.dumps(promote_model.fn(models, name, model_dir), indent=2))


@app.command("emit-shard-landed")
def emit_shard_landed_cmd(path: Annotated[str, typer.Argument(help="The Parquet file that arrived.")]) -> None:
    """Emit seqae.shard.landed for one shard (what an upload hook runs)."""
    from flows.events import emit_shard_landed

    typer.echo(json.dumps(emit_shard_landed(path)))


if __name__ == "__main__":
    app()
