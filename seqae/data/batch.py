"""What the readers hand on: accepted sequences of one record batch, and one shard's counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from seqae.errors import SeqaeError


@dataclass
class ShardStats:
    """Counts for one shard; ``check()`` proves no row was lost.

    Sequence layout: ``rows_in == sequences_out + rows_rejected + rows_filtered``.
    Long layout: ``rows_in == rows_rejected + steps_windowed`` and every window is either out or
    rejected; ``steps_uncovered`` counts trailing steps left out with ``partial_windows="drop"``.
    """

    shard: str
    rows_in: int = 0
    rows_rejected: int = 0
    rows_filtered: int = 0
    sequences_out: int = 0
    windows_formed: int = 0
    windows_rejected: int = 0
    steps_windowed: int = 0
    steps_uncovered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def count_reasons(self, reasons: list[str]) -> None:
        for reason in reasons:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def check(self, layout: str) -> None:
        if layout == "sequence":
            balanced = self.rows_in == self.sequences_out + self.rows_rejected + self.rows_filtered
        else:
            balanced = (self.rows_in == self.rows_rejected + self.steps_windowed
                        and self.windows_formed == self.sequences_out + self.windows_rejected)
        if not balanced:
            raise SeqaeError(f"{self.shard}: row counts do not reconcile: {self.to_dict()}")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SequenceBatch:
    """Accepted sequences of one record batch.

    Attributes:
        shard: the shard's URI.
        keys: one column per key (``DataConfig.key_columns``), ``batch`` rows.
        passthrough: the columns passed through untouched, ``batch`` rows.
        values: ``(batch, time, features)`` float32 in raw units, post-padded with zeros,
            time = the longest row of this batch.
        lengths: ``(batch,)`` int32 valid steps per row.
        rows: ``(batch,)`` int64 row number of each sequence in its shard (first step for windows).
        times: long layout only: ``(batch, time)`` the time of each step of each window, in the time
            column's numpy type (post-padded like ``values``); ``None`` for the sequence layout.
    """

    shard: str
    keys: pa.Table
    passthrough: pa.Table
    values: np.ndarray
    lengths: np.ndarray
    rows: np.ndarray
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)


def pad_concat(parts: list[tuple[np.ndarray, np.ndarray]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, lengths)`` chunks, each padded to its own longest row -> one float32
    ``(rows, longest, width)`` array, zero-padded, and its int32 lengths."""
    rows = sum(len(n) for _, n in parts)
    longest = max((v.shape[1] for v, _ in parts), default=0)
    values = np.zeros((rows, longest, width), dtype=np.float32)
    lengths = np.zeros(rows, dtype=np.int32)
    at = 0
    for v, n in parts:
        values[at:at + len(n), :v.shape[1]] = v
        lengths[at:at + len(n)] = n
        at += len(n)
    return values, lengths
