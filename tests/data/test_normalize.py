import numpy as np
import pytest

from seqae.data import Normalizer
from seqae.errors import ConfigError


def test_streaming_fit_ignores_padding_and_matches_numpy():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 20, size=50)
    values = rng.normal(3.0, 2.0, size=(50, 20, 3)).astype(np.float32)
    for i, n in enumerate(lengths):
        values[i, n:] = 1e6  # padding must not count
    valid = np.concatenate([values[i, :n] for i, n in enumerate(lengths)]).astype(np.float64)
    norm = Normalizer()
    for start in range(0, 50, 7):
        norm.partial_fit(values[start:start + 7], lengths[start:start + 7])
    np.testing.assert_allclose(norm.mean_, valid.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(norm.std_, valid.std(axis=0), rtol=1e-10)
    assert norm.count_ == lengths.sum()
    again = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_allclose(again.transform(values[:2]), norm.transform(values[:2]))


def test_constant_feature_stays_finite_and_unfitted_is_an_error():
    norm = Normalizer().partial_fit(np.ones((2, 3, 1), np.float32), np.array([3, 3]))
    assert np.isfinite(norm.transform(np.ones((1, 3, 1), np.float32))).all()
    with pytest.raises(ConfigError, match="not fitted"):
        Normalizer().std_
    with pytest.raises(ConfigError, match="not fitted"):
        Normalizer().to_dict()
