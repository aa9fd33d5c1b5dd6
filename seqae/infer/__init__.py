"""Inference: a model directory's scorer run over Parquet shards (no TensorFlow, no Prefect).

``embed_shard`` is the per-shard unit that flows, Ray tasks and the CLI share; ``embed`` runs the
same stages over many shards with parallel readers and writers around one scorer.

This package exports what a user of the embed job calls, catches or reads. The plumbing that the
flows, the CLI and the tests share (planning, the output folder, run identities, cache keys, scorer
sessions) is imported from its own submodule: ``seqae.infer.commit``, ``seqae.infer.job``,
``seqae.infer.session``, ``seqae.infer.artifacts``.
"""

from seqae.config import EmbedConfig, SessionOptions
from seqae.infer.commit import EmbedReport, ShardResult, committed_outputs
from seqae.infer.job import embed, embed_shard, plan_outputs
from seqae.infer.model import InferenceModel
from seqae.lease import CommitConflictError, FolderBusyError

__all__ = [
    "CommitConflictError", "EmbedConfig", "EmbedReport", "FolderBusyError", "InferenceModel", "SessionOptions",
    "ShardResult", "committed_outputs", "embed", "embed_shard", "plan_outputs",
]
