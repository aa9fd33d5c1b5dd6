"""Inference: a model directory's scorer run over Parquet shards (no TensorFlow, no Prefect).

``embed_shard`` is the per-shard unit that flows, Ray tasks and the CLI share; ``embed`` runs the
same stages over many shards with parallel readers and writers around one scorer.
"""

from seqae.config import EmbedConfig, SessionOptions
from seqae.infer.artifacts import ModelArtifacts
from seqae.infer.commit import (
    EmbedReport,
    FolderState,
    OutputFolder,
    OutputPlan,
    PlannedShard,
    RunIdentity,
    ShardResult,
    committed_outputs,
    plan_embed,
    reuse_key,
)
from seqae.infer.job import Progress, embed, embed_shard, plan_outputs, prepare_embed, write_summary
from seqae.infer.model import InferenceModel
from seqae.infer.session import NullScorer, ScorerSession
from seqae.lease import CommitConflictError, FolderBusyError

__all__ = [
    "CommitConflictError", "EmbedConfig", "EmbedReport", "FolderBusyError", "FolderState", "InferenceModel", "ModelArtifacts",
    "NullScorer", "OutputFolder", "OutputPlan", "PlannedShard", "Progress", "RunIdentity", "ScorerSession",
    "SessionOptions", "ShardResult", "committed_outputs", "embed", "embed_shard", "plan_embed", "plan_outputs",
    "prepare_embed", "reuse_key", "write_summary",
]
