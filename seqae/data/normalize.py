"""Per-feature mean and standard deviation over valid (unpadded) steps, fitted in one streaming pass."""

from __future__ import annotations

from typing import Any

import numpy as np

from seqae.errors import ConfigError


class Normalizer:
    """Streaming per-feature standardisation, masked for padding.

    ``partial_fit`` merges batch moments with Chan et al.'s parallel update, so the result does not
    depend on how the data is split into batches or shards (up to float64 rounding).

    Attributes:
        mean_: ``(features,)`` float64.
        std_: ``(features,)`` float64, floored at ``epsilon`` so constant features stay finite.
        count_: valid steps seen.
    """

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = epsilon
        self.count_ = 0
        self.mean_: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def partial_fit(self, values: np.ndarray, lengths: np.ndarray) -> Normalizer:
        """Add a batch. ``values``: ``(batch, time, features)``; ``lengths``: ``(batch,)`` valid steps."""
        mask = np.arange(values.shape[1])[None, :] < lengths[:, None]
        steps = values[mask].astype(np.float64)
        n = len(steps)
        if n == 0:
            return self
        mean = steps.mean(axis=0)
        m2 = ((steps - mean) ** 2).sum(axis=0)
        if self.mean_ is None:
            self.count_, self.mean_, self._m2 = n, mean, m2
        else:
            if len(mean) != len(self.mean_):
                raise ConfigError(f"normalizer: expected {len(self.mean_)} features, got {len(mean)}")
            total = self.count_ + n
            delta = mean - self.mean_
            self.mean_ = self.mean_ + delta * n / total
            self._m2 = self._m2 + m2 + delta**2 * self.count_ * n / total
            self.count_ = total
        return self

    def _moments(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean_, m2)``, each ``(features,)``; refused before any valid step was seen."""
        if self.mean_ is None or self._m2 is None:
            raise ConfigError("normalizer: not fitted; it saw no valid step")
        return self.mean_, self._m2

    @property
    def std_(self) -> np.ndarray:
        _, m2 = self._moments()
        return np.maximum(np.sqrt(m2 / max(self.count_, 1)), self.epsilon)

    @property
    def fitted(self) -> bool:
        return self.mean_ is not None

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardise ``(batch, time, features)`` values (padding is transformed too; mask it later)."""
        return ((values - self.mean_) / self.std_).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        mean, _ = self._moments()
        return {"mean": mean.tolist(), "std": self.std_.tolist(), "count": int(self.count_),
                "epsilon": self.epsilon}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        unknown = set(data) - {"mean", "std", "count", "epsilon"}
        if unknown:
            raise ConfigError(f"normalizer: unknown key(s) {', '.join(sorted(unknown))}")
        norm = cls(epsilon=float(data.get("epsilon", 1e-6)))
        norm.mean_ = np.asarray(data["mean"], dtype=np.float64)
        std = np.asarray(data["std"], dtype=np.float64)
        norm.count_ = int(data["count"])
        norm._m2 = std**2 * max(norm.count_, 1)
        return norm
