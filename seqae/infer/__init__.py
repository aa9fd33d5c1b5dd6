"""Inference: a model directory's scorer run over Parquet shards (no TensorFlow, no Prefect).

``embed_shard`` is the per-shard unit that flows, Ray tasks and the CLI share; ``embed`` runs the
same stages over many shards with parallel readers and writers around one scorer.
"""

from seqae.config import EmbedConfig, SessionOptions
from seqae.infer.artifacts import ModelArtifacts
from seqae.infer.commit import EmbedReport, OutputFolder, RunIdentity, ShardResult, committed_outputs, reuse_key
from seqae.infer.job import Progress, embed, embed_shard, plan_outputs, write_summary
from seqae.infer.model import InferenceModel
from seqae.infer.session import NullScorer, ScorerSession

__all__ = [
    "EmbedConfig", "EmbedReport", "InferenceModel", "ModelArtifacts", "NullScorer", "OutputFolder", "Progress",
    "RunIdentity", "ScorerSession", "SessionOptions", "ShardResult", "committed_outputs", "embed", "embed_shard",
    "plan_outputs", "reuse_key", "write_summary",
]
