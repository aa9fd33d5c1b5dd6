import numpy as np
import pyarrow as pa
import pytest

from seqae import names
from seqae.data import SequenceBatch
from seqae.infer.stages import ReadBatch, score


class RowScorer:
    """Outputs that identify their row: the embedding holds the row's first value and its length, the
    error its sum, the step errors its values; records the shape of every call."""

    provider = "test"

    def __init__(self):
        self.calls = []

    def run(self, values, lengths):
        self.calls.append(values.shape)
        first = values[:, 0, 0]
        return {names.EMBEDDING: np.stack([first, lengths.astype(np.float32)], axis=1),
                names.RECON_ERROR: values[:, :, 0].sum(axis=1),
                names.STEP_ERROR: values[:, :, 0].copy()}


def read_batch(lengths, time=None):
    lengths = np.asarray(lengths, np.int32)
    time = time or int(lengths.max())
    values = np.zeros((len(lengths), time, 1), np.float32)
    for i, n in enumerate(lengths):
        values[i, :n, 0] = 100 * i + np.arange(1, n + 1)
    batch = SequenceBatch("s", pa.table({"id": np.arange(len(lengths))}), pa.table({}), values, lengths,
                          np.arange(len(lengths), dtype=np.int64))
    return ReadBatch(batch, pa.table({}))


@pytest.mark.parametrize("lengths, batch_size, calls", [
    ([5] * 7, 16, [(7, 5, 1)]),  # equal lengths in one call
    ([5] * 7, 3, [(3, 5, 1), (3, 5, 1), (1, 5, 1)]),  # equal lengths, slices
    ([2, 5, 3, 5, 1, 4, 2], 3, [(3, 2, 1), (3, 5, 1), (1, 5, 1)]),  # sorted by length, each cut to its longest
    ([2, 5, 3], 16, [(3, 5, 1)]),
])
def test_results_come_back_in_row_order(lengths, batch_size, calls):
    read = read_batch(lengths)
    scorer = RowScorer()
    out = score(scorer, read, batch_size).outputs
    assert scorer.calls == calls
    values = read.batch.values[:, :, 0]
    np.testing.assert_array_equal(out[names.EMBEDDING][:, 0], values[:, 0])
    np.testing.assert_array_equal(out[names.EMBEDDING][:, 1], lengths)
    np.testing.assert_array_equal(out[names.RECON_ERROR], values.sum(axis=1))
    assert out[names.STEP_ERROR].shape == values.shape  # the read batch's width, zeros past each row
    np.testing.assert_array_equal(out[names.STEP_ERROR], values)
    assert all(a.dtype == np.float32 for a in out.values())


def test_an_empty_batch_scores_nothing():
    read = ReadBatch(SequenceBatch("s", pa.table({}), pa.table({}), np.zeros((0, 1, 1), np.float32),
                                   np.zeros(0, np.int32), np.zeros(0, np.int64)), pa.table({}))
    scorer = RowScorer()
    assert score(scorer, read, 4).outputs == {} and scorer.calls == []
