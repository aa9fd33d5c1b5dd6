"""seqae: LSTM sequence autoencoders trained on Parquet, exported to ONNX, served by batch jobs."""

from __future__ import annotations

from seqae._version import __version__


def load_model(model_dir):
    """Load a trained model directory (needs TensorFlow); see ``seqae.model.load_model``."""
    from seqae.model import load_model as _load

    return _load(model_dir)


__all__ = ["__version__", "load_model"]
