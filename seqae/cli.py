"""The ``seqae`` command: a thin layer, one subcommand per library function.

Options are checked before any work starts; a ``SeqaeError`` ends the command with one line on
stderr and exit code 1 (2 for usage errors, as Typer does).

Options that set a config field are bound from that field (``config_options``): its default, its
help, its choices and its type are written once, in ``seqae.config``. Their defaults equal the
configs' defaults, so a command builds each config from the options given on the command line
only (``seqae train`` merges those over its ``--config`` file).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum, EnumMeta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, Protocol, cast, overload

import typer
import typer.core
from rich.console import Console, Group
from rich.padding import Padding
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from seqae import names
from seqae._version import __version__
from seqae.config import (
    MODES,
    DataConfig,
    DriftPolicy,
    EmbedConfig,
    ExportConfig,
    ModelConfig,
    SessionOptions,
    ThresholdConfig,
    TrainConfig,
)
from seqae.configbase import choices_of
from seqae.errors import SeqaeError

if TYPE_CHECKING:  # seqae.infer is imported when embed runs (it loads onnxruntime)
    from seqae.infer.job import Progress as EmbedProgress

console = Console(stderr=True)
_state = {"quiet": False, "verbose": False}


# -- help that reads at 80 columns -----------------------------------------------------------------
def _paragraphs(text: str) -> str:
    """A docstring's paragraphs, each on one line (rich wraps them to the terminal)."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _wrap(text: str, width: int) -> str:
    """``text`` wrapped at ``width`` without splitting a trailing ``[default: ...; x>=1]``."""
    import textwrap

    text = " ".join(text.split())
    head, bracket, extras = text.rpartition(" [")
    if bracket and extras.endswith("]"):  # textwrap breaks at ASCII whitespace only: not at U+00A0
        text = f"{head} [{extras.replace(' ', chr(0xA0))}"
    return textwrap.fill(text, max(width, 20), break_on_hyphens=False, break_long_words=False).replace(chr(0xA0), " ")


def _options_panels(command, ctx, width: int) -> list[Panel]:
    """One panel per ``rich_help_panel``, each option on its own line (names, type or choices) with its
    help, default and range indented below: Typer's table puts names, type and help side by side, which
    at 80 columns cuts long option names and splits choices mid-word."""
    panels: dict[str, list] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names_and_type, help_text = record
        head = Text(("* " if param.required else "  ") + names_and_type.replace(" / ", "/"), style="bold cyan")
        rows = panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", [])
        rows.append(head)
        if help_text:
            rows.append(Padding(Text(_wrap(help_text, width - 10)), (0, 0, 0, 6)))  # border, padding, indent
    return [Panel(Group(*rows), title=title, title_align="left", border_style="dim") for title, rows in panels.items()]


def _commands_panel(group, ctx) -> Panel | None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            table.add_row(name, _paragraphs(sub.help or "").split("\n\n")[0])
    return Panel(table, title="Commands", title_align="left", border_style="dim") if table.row_count else None


def _print_help(command, ctx) -> None:
    out = Console(highlight=False)
    out.print(Padding(Text(command.get_usage(ctx), style="bold"), (1, 1, 1, 1)))
    if command.help:
        out.print(Padding(Text(_paragraphs(command.help)), (0, 1, 1, 1)))
    for panel in _options_panels(command, ctx, out.width):
        out.print(panel)
    if isinstance(command, typer.core.TyperGroup) and (commands := _commands_panel(command, ctx)) is not None:
        out.print(commands)


class HelpCommand(typer.core.TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        _print_help(self, ctx)


class HelpGroup(typer.core.TyperGroup):
    def format_help(self, ctx, formatter) -> None:
        _print_help(self, ctx)


app = typer.Typer(cls=HelpGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="seqae: LSTM sequence autoencoders on Parquet, exported to ONNX, run as batch jobs.")
datasets_app = typer.Typer(cls=HelpGroup, no_args_is_help=True, help="Write a bundled dataset as Parquet shards.")
app.add_typer(datasets_app, name="datasets")
registry_app = typer.Typer(cls=HelpGroup, no_args_is_help=True,
                           help="The registry of promoted models under a models root (a path or a URI).")
app.add_typer(registry_app, name="registry")
command = functools.partial(app.command, cls=HelpCommand)


# -- options bound from config fields ------------------------------------------------------------
@functools.cache
def _choices(literal) -> type[Enum]:
    """The command line's choices of a ``Literal`` of ``seqae.config``."""
    # What Enum("Choice", ...) calls, spelled so that mypy types it (it reads Enum() with computed
    # members as an instance, not as the class it makes).
    return EnumMeta.__call__(Enum, "Choice", [(v, v) for v in choices_of(literal)], type=str)


def _bind(cls: type, name: str, panel: str | None) -> tuple[str, inspect.Parameter, Callable[[Any], Any]]:
    """The option of one config field: (parameter name, parameter, value -> field value)."""
    field = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if field is None or "help" not in field.metadata:
        raise TypeError(f"{cls.__name__}.{name} is not a field made with configbase.option()")
    kind = typing.get_type_hints(cls)[name]
    args = typing.get_args(kind)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else kind
    default, parse = field.default, (lambda value: value)
    if typing.get_origin(base) is typing.Literal:
        base = _choices(base)
        default, parse = base(default), (lambda value: value.value)
    elif typing.get_origin(base) is tuple:  # tuple[str, ...]: comma-separated on the command line
        base, parse = str, (lambda value: tuple(c.strip() for c in value.split(",")))
    meta = field.metadata
    info = typer.Option(help=meta["help"], show_default=True, min=meta.get("min"), max=meta.get("max"),
                        rich_help_panel=panel)
    annotation: object = Annotated[Optional[base] if optional else base, info]  # built at run time: not an alias
    param = meta.get("flag", name)
    return param, inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default), parse


class BoundCommand(Protocol):
    """A command that ``config_options`` decorated: Typer reads ``__signature__``; ``bound`` maps each
    added option's parameter name to its config class and field name."""

    __signature__: inspect.Signature
    bound: dict[str, tuple[type, str]]

    def __call__(self, ctx: typer.Context, **values: Any) -> Any: ...


def config_options(**groups: tuple[type, Sequence[str], str | None]):
    """Add to the decorated command one option per named config field, bound from the field: its
    default, help and choices (``configbase.option``), its type. ``train_fields=(TrainConfig,
    ["batch_size"], "Training")`` adds ``--batch-size`` in the help panel "Training"; the command
    receives ``train_fields``: a dict of the fields whose option was given on the command line (the
    defaults are the configs' own, so ``TrainConfig(**train_fields)`` is what the user asked for)."""
    def decorate(function):
        signature = inspect.signature(function, eval_str=True)
        params = [p for p in signature.parameters.values() if p.name not in groups]
        bound: dict[str, tuple[str, str, Callable]] = {}
        for group, (cls, fields, panel) in groups.items():
            for name in fields:
                param, parameter, parse = _bind(cls, name, panel)
                params.append(parameter)
                bound[param] = (group, name, parse)
        params.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))

        @functools.wraps(function)
        def run(ctx: typer.Context, **values):
            given: dict[str, dict] = {group: {} for group in groups}
            for param, (group, name, parse) in bound.items():
                value = values.pop(param)
                source = ctx.get_parameter_source(param)
                if source is not None and source.name != "DEFAULT":
                    given[group][name] = None if value is None else parse(value)
            return function(**values, **given)

        command = cast(BoundCommand, run)  # the attributes it lacks are set here
        command.__signature__ = signature.replace(parameters=params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        command.bound = {param: (groups[group][0], name) for param, (group, name, _) in bound.items()}
        return command
    return decorate


class Advance(Protocol):
    """What ``progress_bar`` yields: ``n`` more done; a ``description`` replaces the bar's label."""

    def __call__(self, n: int, description: str | None = None) -> None: ...


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "rows") -> Iterator[Advance]:
    """A rich progress bar with counts, rate and ETA; a no-op with ``--quiet`` or when stderr is not a
    terminal (logs and CI output stay readable; the library logs progress at INFO level there)."""
    if _state["quiet"] or not console.is_terminal:
        def ignore(n: int, description: str | None = None) -> None:
            pass

        yield ignore
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


@overload
def _local_path(value: str, what: str) -> Path: ...
@overload
def _local_path(value: str | None, what: str) -> Path | None: ...
def _local_path(value: str | None, what: str) -> Path | None:
    """``value`` as a local ``Path``; a URI is refused with one line (its credentials masked) where the
    command reads or writes local folders only, before any work: Typer's own ``Path`` would have
    made ``s3://KEY:SECRET@bucket/m`` the local folder ``s3:/KEY:SECRET@bucket/m``."""
    from seqae.storage import require_local

    return None if value is None else Path(require_local(value, what))


def _no_credentials(value: str | None) -> None:
    """Refuse a URI that carries credentials (one line, masked), before any work."""
    from seqae.storage import refuse_credentials

    if value is not None:
        refuse_credentials(value)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def main_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, warnings only.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging, the effective config, and "
                                          "TensorFlow's own log.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    _state["quiet"], _state["verbose"] = quiet, verbose
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("tf2onnx", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)
    for noisy in ("tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR if not verbose else logging.INFO)
    if not verbose:  # read by TensorFlow's C++ logging when it loads: errors such as cuInit's too
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _load_tensorflow(required: bool = True) -> None:
    """Import TensorFlow, quietly unless ``--verbose``: its native libraries write to the process's
    stderr while they load (``cudart_stub``, "All log messages before absl::InitializeLog()"), before
    any log level applies, so file descriptor 2 points at /dev/null for the import only. Raises
    ``ModuleNotFoundError`` without the training extra, unless not ``required`` (then: nothing)."""
    if not required:
        from importlib.util import find_spec

        if find_spec("tensorflow") is None:
            return
    if _state["verbose"] or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@datasets_app.command("ucr-anomaly", cls=HelpCommand)
def datasets_ucr_anomaly(
    out: Annotated[str, typer.Option(help="Folder or URI to write train/ and test/ into.")],
    overwrite: Annotated[bool, typer.Option(help="Replace Parquet files already there.")] = False,
) -> None:
    """UCR anomaly archive series 135 (InternalBleeding16), long layout: columns series, time, value,
    is_anomaly (1 on the labelled anomaly); train/ is steps 0..1199 (no anomaly), test/ the rest."""
    out_dir = out  # a folder or a URI; credentials in it and a missing bucket are refused by the library
    from seqae.datasets import write_long_dataset

    paths = write_long_dataset("ucr-anomaly", out_dir, overwrite=overwrite)
    typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")


@datasets_app.command("ecg5000", cls=HelpCommand)
def datasets_ecg5000(
    out: Annotated[str, typer.Option(help="Folder or URI to write part-NNNNN.parquet files into.")],
    shards: Annotated[int, typer.Option(min=1, help="Number of shards.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace Parquet files already in OUT.")] = False,
) -> None:
    """ECG5000 (UCR archive): 5000 heartbeats x 140 steps; columns id, label (1 = normal), values."""
    out_dir = out  # a folder or a URI; credentials in it and a missing bucket are refused by the library
    from seqae.datasets import write_dataset

    paths = write_dataset("ecg5000", out_dir, shards=shards, overwrite=overwrite)
    typer.echo(f"wrote {len(paths)} shard(s) of ECG5000 to {out_dir}")


ModelsRootOption = Annotated[str, typer.Option("--models", help="The models root: a local folder or a URI "
                                               "(s3://bucket/models).")]
ModelNameOption = Annotated[str, typer.Option(help="The model name in the registry.")]


@registry_app.command("promote", cls=HelpCommand)
def registry_promote(
    model_dir: Annotated[str, typer.Argument(help="An exported model directory whose parity gate passed (path or "
                                                  "URI).")],
    models: ModelsRootOption,
    name: ModelNameOption = names.DEFAULT_MODEL_NAME,
    single_writer: Annotated[bool, typer.Option(help="Allow a store without conditional writes, on the promise that "
                                                     "nothing else promotes under this root.")] = False,
) -> None:
    """Copy MODEL_DIR into the registry as the next version of NAME and make it current (an earlier
    version's location promotes it again: a rollback). Emits no event; `python -m flows promote`
    does the same and tells the embed-on-promotion deployment."""
    _no_credentials(model_dir)
    _no_credentials(models)
    from seqae.registry import ModelRegistry

    _print_json(ModelRegistry(models, single_writer=single_writer).promote(model_dir, name).to_dict())


@registry_app.command("current", cls=HelpCommand)
def registry_current(models: ModelsRootOption, name: ModelNameOption = names.DEFAULT_MODEL_NAME) -> None:
    """The current promotion of NAME; its location is what `seqae embed --model` takes. Exit 1 before
    the first promotion."""
    _no_credentials(models)
    from seqae.registry import ModelRegistry

    registry = ModelRegistry(models)
    current = registry.current(name)
    if current is None:
        raise SeqaeError(f"{registry.root}: no model promoted under the name {name!r}; promote one first "
                         "(seqae registry promote)")
    _print_json({**current.to_dict(), "model_dir": str(registry.current_dir(name))})


@registry_app.command("history", cls=HelpCommand)
def registry_history(models: ModelsRootOption, name: ModelNameOption = names.DEFAULT_MODEL_NAME) -> None:
    """Every promotion of NAME, oldest first (an empty list before the first)."""
    _no_credentials(models)
    from seqae.registry import ModelRegistry

    _print_json([p.to_dict() for p in ModelRegistry(models).history(name)])


#: The data contract's options, the same for validate and train.
DATA_OPTIONS = (DataConfig, ["layout", "key_column", "values_column", "time_column", "feature_columns", "window",
                             "stride", "min_length", "max_length"], "Data contract")


@command("validate")
@config_options(data_fields=DATA_OPTIONS)
def validate_cmd(
    data: Annotated[str, typer.Option(help="Parquet file, directory, glob or URI.")],
    rejects_dir: Annotated[Optional[str], typer.Option(help="Write rejected rows to REJECTS_DIR/_rejects/.")] = None,
    filter: Annotated[Optional[str], typer.Option("--filter", help="Row filter, e.g. \"label == 1\".")] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first file that breaks the contract.")] = False,
    *, data_fields: dict,
) -> None:
    """Check input shards against the data contract; print per-shard and total counts as JSON.

    Every file is checked; files that break the contract as a whole are listed (exit code 1)."""
    rejects_path = _local_path(rejects_dir, "--rejects-dir of seqae validate")
    from seqae.scan import scan

    config = DataConfig.from_dict(data_fields, "data options")
    with progress_bar("validate", None) as advance:
        report = scan(data, config, row_filter=filter, rejects_dir=rejects_path, on_rows=advance, fail_fast=fail_fast)
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


def _check_first_shard(data: str, data_config, train_config) -> None:
    """The first shard's schema against the data options and the row filter, from its footer only
    (well under a second), so that a wrong column name fails before TensorFlow loads (seconds)."""
    from importlib.util import find_spec

    from seqae.data import RowFilter, ShardReader, resolve_shards

    if find_spec("tensorflow") is None:  # the inference install: say so before looking at the data
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")
    row_filter = RowFilter.parse(train_config.row_filter) if train_config.row_filter else None
    ShardReader(resolve_shards(data)[0], data_config, row_filter=row_filter)


def option_fields(cls: type) -> list[str]:
    """Every field of ``cls`` made with ``configbase.option()``, in the class's order: a command that
    offers them all (``seqae embed``) gets a new one, such as the option of an optional output column,
    with no change here."""
    return [f.name for f in dataclasses.fields(cls) if "help" in f.metadata]


@command("train")
@config_options(model_fields=(ModelConfig, option_fields(ModelConfig), "Model"),
                train_fields=(TrainConfig, option_fields(TrainConfig), "Training"),
                data_fields=DATA_OPTIONS)
def train_cmd(
    data: Annotated[str, typer.Option(help="Parquet file, directory, glob or URI.")],
    model_dir: Annotated[str, typer.Option(help="Model directory to write (replaced atomically).")],
    config: Annotated[Optional[str], typer.Option(help="JSON or TOML file with sections model, data, train; "
                                                  "options given here override it.")] = None,
    *, model_fields: dict, train_fields: dict, data_fields: dict,
) -> None:
    """Train an LSTM autoencoder on Parquet shards; print the result as JSON (with --verbose, the
    effective config on stderr first)."""
    from seqae.modelstore import require_bucket

    # a local folder or a URI (s3://bucket/models/ecg), as embed takes: no credentials in it, its bucket there
    require_bucket(model_dir, "the model directory")
    config_file = _local_path(config, "--config of seqae train")
    from seqae.config import load_config_file

    sections = load_config_file(config_file) if config_file else {}
    model_fields = {**sections.get("model", {}), **model_fields}
    mode = model_fields.get("mode", ModelConfig.mode)  # a bad value is refused by ModelConfig below
    if isinstance(mode, str) and mode in MODES and MODES[mode].predicts and "horizon" not in model_fields:
        predicting = " and ".join(name for name, spec in MODES.items() if spec.predicts)
        raise typer.BadParameter(f"the {predicting} modes need --horizon", param_hint="--horizon")
    # Every option is checked before any data is read, without TensorFlow.
    data_config = DataConfig.from_dict({**sections.get("data", {}), **data_fields}, "data options")
    train_config = TrainConfig.from_dict({**sections.get("train", {}), **train_fields}, "train options")
    model_config = ModelConfig.from_dict(model_fields, "model options")
    if _state["verbose"]:
        effective = {"model": model_config.to_dict(), "data": data_config.to_dict(), "train": train_config.to_dict()}
        console.print_json(json.dumps(effective))
    _check_first_shard(data, data_config, train_config)
    _load_tensorflow()
    from seqae.train import train

    with progress_bar("train", train_config.max_epochs, unit="epochs") as advance:
        result = train(data, model_dir, model_config=model_config, data_config=data_config,
                       train_config=train_config, on_epoch=lambda epoch, logs: advance(1))
    t = result.training
    _print_json({"model_dir": str(result.model_dir), "model_id": result.model_id,
                 "model_version": result.model_version, "model": result.metadata["model"],
                 "epochs": result.epochs, "best_epoch": result.best_epoch, "monitor": t["monitor"],
                 "metrics": result.metrics, "train_rows": t["train_rows"], "validation_rows": t["validation_rows"],
                 "validation": t["validation"], "warnings": t["warnings"], "seconds": t["seconds"]})


@command("export")
@config_options(export_fields=(ExportConfig, ["opset", "fp16", "int8", "embedding_atol", "error_rtol", "neighbours",
                                              "neighbours_max_windows"], None))
def export_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory written by `seqae train`.")],
    data: Annotated[Optional[str], typer.Option(help="Rows for the parity gate (default: the training data).")] = None,
    *, export_fields: dict,
) -> None:
    """Write encoder.onnx and scorer.onnx next to the Keras model and check them against it."""
    from seqae.storage import Location

    _no_credentials(model_dir)
    if not Location.of(model_dir).join(names.METADATA_FILE).is_file():
        raise typer.BadParameter(f"{model_dir} holds no {names.METADATA_FILE}", param_hint="MODEL_DIR")
    config = ExportConfig(**export_fields)
    _load_tensorflow()
    from seqae.export import export

    result = export(model_dir, config, data=data)
    _print_json({"model_dir": str(model_dir), "files": result.files, "parity": {
        k: v for k, v in result.parity.items() if k in ("passed", "rows", "worst", "checks")},
        **({"fp16_parity": result.fp16_parity} if config.fp16 else {}),
        **({"int8_parity": result.int8_parity} if config.int8 else {}),
        **({"neighbours": {k: v for k, v in result.record["neighbours"].items()
                           if k in ("bank_windows", "bank_stride", "windows_rejected", "bytes", "parity", "reference")}}
           if "neighbours" in result.record else {})})


@command("embed")
@config_options(embed_fields=(EmbedConfig, option_fields(EmbedConfig), None))
def embed_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory (a local path or a URI such as s3://bucket/model).")],
    data: Annotated[str, typer.Option(help="Parquet file, directory, glob or URI.")],
    out: Annotated[str, typer.Option(help="Output folder or URI (one Parquet file per input shard).")],
    max_length: Annotated[Optional[int], typer.Option(min=1, help="Reject longer sequences (default: the limit recorded at training).")] = None,
    *, embed_fields: dict,
) -> None:
    """Write embeddings and reconstruction errors for every input shard; resumable and idempotent.

    An input file that cannot be used as a whole (unreadable, off contract) is quarantined: recorded
    under OUT/_seqae/quarantine/ with its reason while the other shards are processed; the command then
    exits 1 naming every such file.
    """
    from seqae.infer import embed
    from seqae.storage import Location

    where = Location.of(model)  # a URI that carries credentials is refused here, before any work
    shown = str(Path(model)) if where.is_local else where.uri
    if where.is_local and not where.is_dir():  # object stores have no folders, only keys below a prefix
        raise typer.BadParameter(f"{shown} does not exist or is not a folder", param_hint="--model")
    if not where.join(names.METADATA_FILE).is_file():
        raise typer.BadParameter(f"{shown} holds no {names.METADATA_FILE}", param_hint="--model")
    config = EmbedConfig(**embed_fields)
    data_config = None
    if max_length is not None:
        from seqae.modeldir import ModelInfo

        data_config = dataclasses.replace(ModelInfo.read(model).data, max_length=max_length)
    total = _total_rows(data)
    shards_done = 0

    with progress_bar("embed", total, unit="rows") as advance:
        def on_progress(event: EmbedProgress) -> None:
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
    from seqae.infer.commit import OutputFolder

    totals = report.totals
    if totals["rows_in"] and not totals["rows_written"] and not report.quarantined:
        console.print(f"error: every one of the {totals['rows_in']} input rows was rejected; nothing was written "
                      f"(reasons in {OutputFolder(report.out).rejects})", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(1)
    if report.quarantined:
        for shard in report.quarantined:
            console.print(f"error: {shard.error}", markup=False, soft_wrap=True, highlight=False)
        console.print(f"error: {len(report.quarantined)} input file(s) quarantined (recorded in "
                      f"{OutputFolder(report.out).quarantine_dir}/); the other {totals['shards'] - len(report.quarantined)} "
                      "shard(s) are committed", markup=False, soft_wrap=True, highlight=False)
        raise typer.Exit(1)


#: ``--device`` of the commands that score with the exported model (one onnxruntime session).
DEVICE_OPTION = (SessionOptions, ["device"], None)


@command("threshold")
@config_options(threshold_fields=(ThresholdConfig, ["method", "false_alarm_rate", "contamination", "tail_start"],
                                  None), session=DEVICE_OPTION)
def threshold_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory.")],
    data: Annotated[Optional[str], typer.Option(help="Rows to fit on (default: the model's held-out reference).")] = None,
    filter: Annotated[Optional[str], typer.Option("--filter", help="The normal rows of --data, e.g. \"label == 1\".")] = None,
    *, threshold_fields: dict, session: dict,
) -> None:
    """Fit the anomaly threshold and store it with the model; embed then writes score and is_anomaly."""
    _no_credentials(model)
    config = ThresholdConfig(**threshold_fields)
    device = SessionOptions(**session).device
    from seqae.anomaly import fit_threshold

    fitted = fit_threshold(model, config, data=data, row_filter=filter, device=device)
    steps = fitted.steps_
    _print_json({"model": str(model), "threshold": fitted.threshold_, "method": fitted.method_,
                 "false_alarm_rate": config.false_alarm_rate, "fitted_on": fitted.n_samples_, "tail": fitted.tail_,
                 **({} if steps is None else {"steps": {"threshold": steps.threshold_, "method": steps.method_,
                                                        "statistic": fitted.statistic_,
                                                        "fitted_on": steps.n_samples_,
                                                        **({"data": names.NEIGHBOURS_REFERENCE_FILE}
                                                           if data is None and fitted.statistic_ == names.WINDOW_DISTANCE_MIN
                                                           else {})}}),
                 "data": data or "the held-out reference"})


@command("evaluate")
@config_options(session=DEVICE_OPTION)
def evaluate_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory.")],
    data: Annotated[str, typer.Option(help="Labelled Parquet shards.")],
    out: Annotated[str, typer.Option(help="Folder for report.json, report.md and the plots.")] = "evaluation",
    label_column: Annotated[str, typer.Option(help="The label column (passed through by the contract).")] = "label",
    normal_value: Annotated[str, typer.Option(help="The label of normal rows (numbers are read as numbers).")] = "1",
    filter: Annotated[Optional[str], typer.Option(
        "--filter", help="Sequence layout: evaluate matching rows only.")] = None,
    probe: Annotated[Optional[str], typer.Option(
        help="Sequence layout: a linear probe, trained on these rows, e.g. \"id < 500\".")] = None,
    baseline_data: Annotated[Optional[str], typer.Option(
        help="Long layout: normal data (e.g. the training data) for the nearest-training-window baseline.")] = None,
    *, session: dict,
) -> None:
    """ROC-AUC, PR-AUC, F1 at the stored threshold, plots and (with --probe) a linear probe."""
    _no_credentials(model)
    _no_credentials(out)
    device = SessionOptions(**session).device
    _load_tensorflow(required=False)  # where installed, the report draws reconstructions with the Keras model
    from seqae.evaluate import evaluate

    report = evaluate(model, data, out, label_column=label_column, normal_value=_literal(normal_value),
                      row_filter=filter, probe_train=probe, device=device, baseline_data=baseline_data)
    _print_json({k: v for k, v in report.items() if k != "plots"} | {"report": f"{out.rstrip('/')}/report.md"})


@command("drift")
@config_options(session=DEVICE_OPTION, policy=(DriftPolicy, ["alpha"], None))
def drift_cmd(
    model: Annotated[str, typer.Option(help="Exported model directory.")],
    data: Annotated[str, typer.Option(help="New Parquet shards to compare with the model's reference.")],
    filter: Annotated[Optional[str], typer.Option("--filter", help="Compare matching rows only.")] = None,
    *, session: dict, policy: dict,
) -> None:
    """Compare errors and embeddings of new data with the held-out reference (KS tests); exit 3 on drift."""
    _no_credentials(model)
    device = SessionOptions(**session).device
    alpha = DriftPolicy.from_dict(policy, "drift options").alpha
    from seqae.anomaly import drift

    report = drift(model, data, row_filter=filter, alpha=alpha, device=device)
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
        _show(exc)
        code = exc.exit_code
    sys.exit(code or 0)


def _show(exc: typer.TyperException) -> None:
    """Print a Typer error as Typer does: every one Typer raises is a click exception, whose ``show``
    adds the usage line to a usage error (``typer.TyperException`` itself declares no ``show``)."""
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        console.print(f"Error: {exc.format_message()}", markup=False, soft_wrap=True, highlight=False)


if __name__ == "__main__":
    main()
