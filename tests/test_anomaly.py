import numpy as np

from seqae import names
from seqae.anomaly import score_rows


class StepScorer:
    """Returns each row's values as its step errors: what comes back shows where each row landed."""

    def run(self, values, lengths):
        steps = np.where(np.arange(values.shape[1])[None, :] < lengths[:, None], values[..., 0], 0.0)
        return {names.EMBEDDING: values[:, :1, 0].astype(np.float32), names.STEP_ERROR: steps.astype(np.float32)}


def batch(lengths, start):
    values = np.zeros((len(lengths), max(lengths), 1), np.float32)
    for i, n in enumerate(lengths):
        values[i, :n, 0] = start + i + 1
    return values, np.asarray(lengths, np.int32)


def test_read_batches_of_different_widths_stack_with_step_errors_padded():
    """The reference of a long-layout model with partial windows failed its export: each read batch is
    as wide as its longest row, and per-step outputs of 2500 and 1000 steps could not be joined."""
    out = score_rows(StepScorer(), 2, iter([batch([5, 4, 5], 0), batch([3, 2], 10)]))
    steps = out[names.STEP_ERROR]
    assert steps.shape == (5, 5) and out[names.EMBEDDING].shape == (5, 1)
    assert steps[3].tolist() == [11, 11, 11, 0, 0] and steps[4].tolist() == [12, 12, 0, 0, 0]
    assert steps[1].tolist() == [2, 2, 2, 2, 0] and out[names.EMBEDDING][:, 0].tolist() == [1, 2, 3, 11, 12]


def test_the_row_limit_holds_across_batches():
    out = score_rows(StepScorer(), 8, iter([batch([2, 2], 0), batch([4, 4], 10), batch([1], 20)]), limit=3)
    assert out[names.STEP_ERROR].shape == (3, 4) and out[names.EMBEDDING][:, 0].tolist() == [1, 2, 11]
