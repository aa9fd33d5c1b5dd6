"""What every seqae config shares: checks that name the received value, and ``to_dict``/``from_dict``
that round-trip through JSON and refuse unknown keys. Imports nothing of seqae but errors."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from seqae.errors import ConfigError

C = TypeVar("C", bound="Config")


def check_positive(name: str, value: int | None, *, allow_none: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a positive integer (or None where allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field that the command line offers: its default and its one-line ``help``, written
    here once; ``seqae.cli`` binds the option from them (and from the field's type: a ``Literal``
    gives the choices). ``cli`` holds what only the command line needs: ``flag="layers"`` (the option
    is ``--layers``, not ``--num-layers``), ``min=1`` / ``max=0.99`` (a range checked while parsing)."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


def choices_of(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` type, in order: ``choices_of(Mode) == ("reconstruct", ...)``."""
    return typing.get_args(literal)


def check_choice(name: str, value: Any, choices: Any) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices`` (a ``Literal`` type or a tuple)."""
    choices = choices_of(choices) or tuple(choices)
    if value not in choices:
        expected = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ConfigError(f"{name}: expected {expected}, got {value!r}")


def check_range(name: str, value: Any, low: float, high: float, *, high_open: bool = True) -> None:
    """``low <= value < high`` (or ``<= high`` with ``high_open=False``) for a real number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ConfigError(f"{name}: expected a value in [{low:g}, {high:g}{')' if high_open else ']'}, got {value!r}")


def check_positive_number(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{name}: expected a positive number{' or None' if allow_none else ''}, got {value!r}")


def refuse_unknown_keys(cls: type, data: Any, source: str) -> None:
    """Raise ConfigError naming every key of ``data`` that is not a field of dataclass ``cls``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of option names to values, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}"
        )


class Config:
    """Mixin for frozen dataclasses: a flat dict that rebuilds the object (tuples as lists)."""

    # Where pydantic validates a config (Prefect flow parameters do), unknown keys are refused there
    # too; a plain dict, so that seqae itself needs no pydantic.
    __pydantic_config__ = {"extra": "forbid"}

    if TYPE_CHECKING:  # what @dataclass adds to every subclass: lets mypy take them as dataclasses
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str | None = None) -> C:
        """Rebuild from ``to_dict()`` output or a config file section; unknown keys are refused."""
        named = source is not None
        source = source or " ".join(re.findall(r"[A-Z][a-z0-9]*", cls.__name__)).lower()  # "data config"
        refuse_unknown_keys(cls, data, source)
        tuples = {f.name for f in dataclasses.fields(cls) if "tuple" in str(f.type)}
        fixed = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**fixed)
        except ConfigError as exc:
            if named and not str(exc).startswith(f"{source}: "):  # say where the bad value came from
                raise ConfigError(f"{source}: {exc}") from exc
            raise
