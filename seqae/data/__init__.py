"""The input data contract: locate shards, read and validate them, window, pad and normalise.

Reads only (writing is ``seqae.io``); nothing here imports TensorFlow: inference uses this package too.
"""

from seqae.data.batch import SequenceBatch, ShardStats, pad_concat
from seqae.data.config import DataConfig
from seqae.data.filters import RowFilter
from seqae.data.normalize import Normalizer
from seqae.data.reader import ShardReader, iter_shard
from seqae.data.rejects import REJECT_REASONS, REJECT_SCHEMA, empty_rejects, rejects_table
from seqae.data.source import Shard, resolve_shards
from seqae.data.windows import key_runs

__all__ = [
    "DataConfig", "Normalizer", "REJECT_REASONS", "REJECT_SCHEMA", "RowFilter", "SequenceBatch",
    "Shard", "ShardReader", "ShardStats", "empty_rejects", "iter_shard", "key_runs", "pad_concat", "rejects_table",
    "resolve_shards",
]
