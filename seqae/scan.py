"""Read every shard once, validating it, and report what was accepted and rejected (``seqae validate``).

Above ``seqae.io`` (it writes rejects), beside ``seqae.infer``; ``seqae.data`` reads only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from seqae.data import DataConfig, RowFilter, ShardReader, ShardStats, resolve_shards
from seqae.data.source import data_root
from seqae.errors import ContractError
from seqae.io import output_names_for, write_rejects

log = logging.getLogger(__name__)


@dataclass
class ScanReport:
    """Per-shard statistics and the totals of a validation pass."""

    shards: list[ShardStats] = field(default_factory=list)
    num_features: int | None = None
    longest: int = 0
    bad_files: list[dict[str, str]] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        keys = ("rows_in", "rows_rejected", "rows_filtered", "sequences_out", "windows_rejected",
                "steps_uncovered")
        return {k: sum(getattr(s, k) for s in self.shards) for k in keys}

    @property
    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.reasons.items():
                out[k] = out.get(k, 0) + v
        return dict(sorted(out.items()))


def scan(location: str, config: DataConfig | None = None, *, row_filter: str | None = None,
         rejects_dir: str | os.PathLike | None = None, batch_size: int = 4096,
         on_rows: Callable[[int], None] | None = None, fail_fast: bool = False) -> ScanReport:
    """Validate every shard at ``location`` against the contract.

    Args:
        location: file, directory, glob or URI (see ``resolve_shards``).
        config: the data contract; defaults to the sequence layout with ``id`` and ``values``.
        row_filter: e.g. ``"label == 1"``; rows that do not pass are counted as filtered.
        rejects_dir: when given, each shard's rejected rows go to ``rejects_dir/_rejects/``.
        batch_size: rows per record batch read.
        on_rows: called with the number of input rows after each batch (progress).
        fail_fast: raise at the first file that breaks the contract as a whole; by default it is
            listed in ``bad_files`` with its one-line reason and the other files are checked.

    Returns:
        A ``ScanReport``; every shard's counts reconcile (rows in = out + rejected + filtered).

    Raises:
        ContractError: with ``fail_fast``, a file breaks the contract as a whole.
        InputNotFoundError: nothing matched ``location``.
    """
    config = config or DataConfig()
    flt = RowFilter.parse(row_filter) if row_filter else None
    report = ScanReport()
    shards = resolve_shards(location)
    reject_names = output_names_for(shards, data_root(location, shards))  # the names embed uses
    for shard in shards:
        try:
            stats, rejects = _scan_shard(shard, config, flt, batch_size, report, on_rows)
        except ContractError as exc:
            if fail_fast:
                raise
            report.bad_files.append({"shard": shard.uri, "reason": " ".join(str(exc).split())})
            continue
        if rejects_dir is not None:
            write_rejects(rejects_dir, reject_names[shard.uri], rejects,
                          {"shard": shard.uri, "fingerprint": shard.fingerprint})
        log.debug("%s: %s", shard.uri, stats.to_dict())
        report.shards.append(stats)
    return report


def _scan_shard(shard, config: DataConfig, row_filter, batch_size: int, report: ScanReport,
                on_rows: Callable[[int], None] | None) -> tuple[ShardStats, list]:
    reader = ShardReader(shard, config, batch_size=batch_size, row_filter=row_filter, num_features=report.num_features)
    rejects = []
    seen = 0
    for batch, rej in reader:
        report.longest = max(report.longest, batch.values.shape[1])
        rejects.append(rej)
        if on_rows is not None:
            on_rows(reader.stats.rows_in - seen)
            seen = reader.stats.rows_in
    if report.num_features is None and reader.stats.rows_in:
        report.num_features = reader.num_features  # a file with rows fixes it; an empty one does not
    return reader.stats, rejects
