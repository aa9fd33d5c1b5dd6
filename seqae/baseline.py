"""The nearest-training-window baseline for long series (the matrix profile's idea).

Each window of the data is scored by its distance to the nearest window of normal training data: the
mean squared difference over its steps and features, in the model's standardised units. Spread to
steps as seqae's own step score is (the least over the windows covering a step,
``seqae.infer.steps``), it is the simple baseline that a long-series anomaly score has to beat:
``seqae evaluate --baseline-data`` reports it beside the model's score.

The bank holds every full window of the training data at stride 1 (``DataConfig`` of the model with
``stride=1``), thinned to every second, fourth, ... window in reading order when it would exceed
``max_windows`` (by default as many as fit in ``MAX_BANK_BYTES``); what was kept is recorded
(``NearestWindows.stride``). A shorter trailing window
(``partial_windows="keep"``) is compared with the first steps of the bank's windows. Distances are
computed in float64, in chunks of at most ``CHUNK_VALUES`` distances, with numpy: memory is the bank
plus one chunk.

No TensorFlow, no Prefect.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from seqae.data import DataConfig, ShardReader, resolve_shards
from seqae.errors import SeqaeError

#: The bank's size at most, in bytes (float64: 239,000 windows of 140 steps and one feature).
MAX_BANK_BYTES = 256 * 2 ** 20
#: Distances computed at once (float64: 128 MiB), at most 256 windows against the whole bank.
CHUNK_VALUES = 2 ** 24
CHUNK = 256


class NearestWindows:
    """A bank of standardised training windows and the distance of new windows to their nearest one.

    Build it with ``NearestWindows.build``; ``distances(values, lengths)`` scores a batch of windows.
    """

    def __init__(self, bank: np.ndarray, window: int, features: int, mean: np.ndarray, std: np.ndarray,
                 stride: int, windows_read: int, data: str):
        self.bank = bank  # (windows, window * features) float64, standardised
        self.bank_sq = (bank ** 2).sum(axis=1)
        self.window, self.features = window, features
        self.mean, self.std = mean, std
        self.stride, self.windows_read, self.data = stride, windows_read, data

    @classmethod
    def build(cls, data: str, config: DataConfig, num_features: int, normalization: dict[str, Any], *,
              max_windows: int | None = None, read_batch_size: int = 16384) -> NearestWindows:
        """Read every full window of the long-layout shards at ``data`` (normal data: the bank is what
        "normal" means) at stride 1, standardised with the model's ``normalization`` (``mean``,
        ``std``), thinned to at most ``max_windows`` (None: as many as fit in ``MAX_BANK_BYTES``)."""
        if config.layout != "long" or not config.window:
            raise SeqaeError(f"baseline: the nearest-window baseline needs a long-layout model with a window; "
                             f"this one reads the {config.layout} layout")
        if max_windows is None:
            max_windows = max(MAX_BANK_BYTES // (8 * config.window * num_features), 1)
        if max_windows < 1:
            raise SeqaeError(f"baseline: max_windows must be at least 1, got {max_windows}")
        every = dataclasses.replace(config, stride=1, partial_windows="drop")
        mean = np.asarray(normalization["mean"], dtype=np.float64)
        std = np.asarray(normalization["std"], dtype=np.float64)
        width = config.window
        kept: list[np.ndarray] = []
        positions: list[np.ndarray] = []
        step, read, held = 1, 0, 0
        for shard in resolve_shards(data):
            for batch, _rejects in ShardReader(shard, every, batch_size=read_batch_size, num_features=num_features):
                full = np.flatnonzero(batch.lengths == width)
                index = read + np.arange(len(full))
                read += len(full)
                keep = index % step == 0  # chosen before the float64 copy, which is of the kept windows only
                values = batch.values[full[keep], :width].astype(np.float64)
                kept.append(((values - mean) / std).reshape(len(values), width * values.shape[2]))
                positions.append(index[keep])
                held += int(keep.sum())
                while held > max_windows:  # thin: every second window of those kept, from now on too
                    step *= 2
                    masks = [p % step == 0 for p in positions]
                    kept = [k[m] for k, m in zip(kept, masks)]
                    positions = [p[m] for p, m in zip(positions, masks)]
                    held = sum(len(p) for p in positions)
        if not held:
            raise SeqaeError(f"{data}: no full window of {width} steps to compare with (the baseline needs normal "
                             "series at least one window long)")
        return cls(np.concatenate(kept), width, num_features, mean, std, step, read, data)

    def distances(self, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(windows,)``: each window's mean squared difference to its nearest bank window, over its
        valid steps and features (``values (windows, time, features)`` raw, post-padded)."""
        n = len(lengths)
        out = np.empty(n, dtype=np.float64)
        f = self.features
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            span = int(min(length, self.window)) * f
            bank = self.bank[:, :span]
            bank_sq = self.bank_sq if span == self.bank.shape[1] else (bank ** 2).sum(axis=1)
            x = ((values[rows, :int(length)].astype(np.float64) - self.mean) / self.std).reshape(len(rows), -1)[:, :span]
            chunk = int(np.clip(CHUNK_VALUES // len(bank), 1, CHUNK))
            for a in range(0, len(rows), chunk):
                w = x[a:a + chunk]
                nearest = (bank_sq[None, :] - 2.0 * w @ bank.T).min(axis=1) + (w ** 2).sum(axis=1)
                out[rows[a:a + chunk]] = np.maximum(nearest, 0.0) / span
        return out

    def describe(self) -> dict[str, Any]:
        return {"what": "each window's mean squared distance (standardised units) to its nearest window of the "
                        "baseline data, the least over the windows covering a step (as the model's step score)",
                "data": self.data, "bank_windows": int(len(self.bank)), "windows_read": int(self.windows_read),
                "bank_stride": int(self.stride)}
