"""The input data contract: which columns hold what, and the limits a sequence must respect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from seqae import names
from seqae.configbase import Config, check_choice, check_positive, check_positive_number, option
from seqae.errors import ConfigError

Layout = Literal["sequence", "long"]
PartialWindows = Literal["keep", "drop"]


class LongLayout(NamedTuple):
    """The fields the long layout requires of a ``DataConfig``, never ``None`` there."""

    feature_columns: tuple[str, ...]
    window: int


@dataclass(frozen=True)
class DataConfig(Config):
    """How to read sequences from Parquet.

    Sequence layout (one row per sequence): ``key_column`` identifies the row, ``values_column`` holds
    ``list<float>`` (one feature) or ``list<list<float>>`` / fixed-size lists (``[time][feature]``);
    other columns are passed through untouched (all of them, or those named in ``passthrough``).

    Long layout (one row per time step): ``key_column`` names the series, ``time_column`` orders its
    steps and ``feature_columns`` hold one numeric feature each. Each series is cut into windows of
    ``window`` steps every ``stride`` steps; a window's key is (series, start time, end time).

    Args:
        layout: ``"sequence"`` or ``"long"``.
        key_column: the row key (sequence layout) or series key (long layout).
        values_column: the list column of the sequence layout.
        time_column: the ordering column of the long layout.
        feature_columns: the feature columns of the long layout (required there).
        num_features: features per step; ``None`` takes it from the data (first file decides).
        min_length: shortest accepted sequence; shorter rows are rejected.
        max_length: longest accepted sequence; longer rows are rejected. ``None``: no limit.
        window: steps per window (long layout, required there).
        stride: steps between window starts (long layout); defaults to ``window``.
        partial_windows: ``"keep"`` emits one shorter window over a series' trailing steps,
            ``"drop"`` leaves them out and counts them in the shard statistics.
        passthrough: columns copied to outputs (sequence layout); ``None`` means every other column.
        max_abs_value: largest accepted magnitude of a value; rows with a larger one are rejected
            (``out_of_range``). Finite sentinels such as float32-max (3.4e38) would otherwise poison the
            normalisation (a standard deviation of 1e36) and give infinite errors. ``None``: no limit
            (values beyond float32 are then ``non_finite``).
    """

    layout: Layout = option("sequence", "sequence: one row per sequence; long: one row per step.")
    key_column: str = option("id", "Key column (series key in the long layout).")
    values_column: str = option("values", "List column holding the sequence (sequence layout).")
    time_column: str = option("time", "Time column (long layout).")
    feature_columns: tuple[str, ...] | None = option(None, "Comma-separated feature columns (long layout).")
    num_features: int | None = None
    min_length: int = option(1, "Reject sequences shorter than this.", min=1)
    max_length: int | None = option(None, "Reject sequences longer than this.", min=1)
    window: int | None = option(None, "Steps per window (long layout).", min=1)
    stride: int | None = option(None, "Steps between windows (long layout; default: window).", min=1)
    partial_windows: PartialWindows = "keep"
    passthrough: tuple[str, ...] | None = field(default=None)
    max_abs_value: float | None = 1e30

    def __post_init__(self) -> None:
        check_choice("layout", self.layout, Layout)
        check_choice("partial_windows", self.partial_windows, PartialWindows)
        check_positive("min_length", self.min_length)
        check_positive("max_length", self.max_length, allow_none=True)
        check_positive("num_features", self.num_features, allow_none=True)
        check_positive_number("max_abs_value", self.max_abs_value, allow_none=True)
        if self.max_length is not None and self.max_length < self.min_length:
            raise ConfigError(
                f"max_length: expected at least min_length ({self.min_length}), got {self.max_length}"
            )
        for name in ("feature_columns", "passthrough"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if self.layout == "long":
            if not self.feature_columns:
                raise ConfigError("feature_columns: the long layout needs at least one feature column")
            check_positive("window", self.window)
            check_positive("stride", self.stride, allow_none=True)
            if self.num_features is not None and self.num_features != len(self.feature_columns):
                raise ConfigError(
                    f"num_features: expected {len(self.feature_columns)} (one per feature column), "
                    f"got {self.num_features}"
                )
            if self.max_length is not None and self.window is not None and self.window > self.max_length:
                raise ConfigError(f"window: expected at most max_length ({self.max_length}), got {self.window}")
        else:
            if self.window is not None or self.stride is not None:
                raise ConfigError("window/stride: only the long layout is cut into windows")

    def long_layout(self) -> LongLayout:
        """``feature_columns`` and ``window`` of the long layout (``__post_init__`` requires both there).

        Raises:
            ConfigError: the layout is not ``"long"``.
        """
        if self.layout != "long" or not self.feature_columns or self.window is None:
            raise ConfigError(f"layout: expected 'long' (feature columns cut into windows), got {self.layout!r}")
        return LongLayout(self.feature_columns, self.window)

    @property
    def effective_stride(self) -> int:
        return self.stride if self.stride is not None else (self.window or 1)

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Columns that identify one output row."""
        if self.layout == "long":
            return (self.key_column, names.WINDOW_START, names.WINDOW_END)
        return (self.key_column,)

    def feature_names(self, num_features: int) -> list[str]:
        if self.layout == "long":
            return list(self.feature_columns or ())
        if num_features == 1:
            return [self.values_column]
        return [f"{self.values_column}[{i}]" for i in range(num_features)]
