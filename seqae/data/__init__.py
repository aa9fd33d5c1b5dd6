"""The input data contract: locate shards, read and validate them, window, pad and normalise.

Nothing here imports TensorFlow: inference uses this package too.
"""

from seqae.data.config import DataConfig
from seqae.data.filters import RowFilter
from seqae.data.normalize import Normalizer
from seqae.data.reader import (
    REJECT_REASONS,
    REJECT_SCHEMA,
    SequenceBatch,
    ShardReader,
    ShardStats,
    iter_shard,
)
from seqae.data.source import Shard, resolve_shards

__all__ = [
    "DataConfig", "Normalizer", "REJECT_REASONS", "REJECT_SCHEMA", "RowFilter", "SequenceBatch",
    "Shard", "ShardReader", "ShardStats", "iter_shard", "resolve_shards",
]
