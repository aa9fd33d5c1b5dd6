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

from seqae import __version__
from seqae.errors import SeqaeError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="seqae: LSTM sequence autoencoders on Parquet, exported to ONNX, run as batch jobs.")
datasets_app = typer.Typer(no_args_is_help=True, help="Write a bundled dataset as Parquet shards.")
app.add_typer(datasets_app, name="datasets")

console = Console(stderr=True)
_state = {"quiet": False}


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "rows") -> Iterator[Callable[[int], None]]:
    """A rich progress bar with counts, rate and ETA; a no-op callback with ``--quiet``."""
    if _state["quiet"] or not console.is_terminal and total is None:
        yield lambda n: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(f"{unit}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=_state["quiet"], transient=False) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int) -> None:
            bar.advance(task, n)
            t = bar.tasks[task]
            if t.speed:
                bar.update(task, rate=f"{t.speed:,.0f}/s")

        yield advance


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


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


class DatasetName(str, Enum):
    ecg5000 = "ecg5000"


@datasets_app.command("ecg5000")
def datasets_ecg5000(
    out: Annotated[Path, typer.Option(help="Directory to write part-NNNNN.parquet files into.")],
    shards: Annotated[int, typer.Option(min=1, help="Number of shards.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace Parquet files already in OUT.")] = False,
) -> None:
    """ECG5000 (UCR archive): 5000 heartbeats x 140 steps; columns id, label (1 = normal), values."""
    from seqae.datasets import write_dataset

    paths = write_dataset("ecg5000", out, shards=shards, overwrite=overwrite)
    typer.echo(f"wrote {len(paths)} shard(s) of ECG5000 to {out}")


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
    rejects_dir: Annotated[Optional[Path], typer.Option(help="Write rejected rows to REJECTS_DIR/_rejects/.")] = None,
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
) -> None:
    """Check input shards against the data contract; print per-shard and total counts as JSON."""
    from seqae.data.scan import scan

    config = data_config_from_options(layout, key_column, values_column, time_column, feature_columns,
                                      window, stride, min_length, max_length)
    with progress_bar("validate", None) as advance:
        report = scan(data, config, row_filter=filter, rejects_dir=rejects_dir, on_rows=advance)
    _print_json({"shards": [s.to_dict() for s in report.shards], "totals": report.totals,
                 "reasons": report.reasons, "num_features": report.num_features, "longest": report.longest})


def main() -> None:
    """Console entry point: run the app, turning seqae errors into one line and exit code 1."""
    try:
        code = app(standalone_mode=False)
    except SeqaeError as exc:
        console.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False)
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
