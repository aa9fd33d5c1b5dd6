"""Reconstruction error as an anomaly score, judged against labels where the data has them.

The first piece of evaluation (thresholds, reports and plots come with the evaluation issue): ROC-AUC
and PR-AUC from scikit-learn over the committed outputs of an embed run. No TensorFlow, no Prefect.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqae import names
from seqae.errors import SeqaeError
from seqae.infer.commit import committed_outputs
from seqae.storage import Location


def has_column(out: str | os.PathLike | Location, column: str) -> bool:
    """Whether the committed outputs of ``out`` carry ``column`` (e.g. a passthrough label)."""
    outputs = committed_outputs(out)
    if not outputs:
        return False
    first = outputs[0]
    with first.filesystem.open_input_file(first.path) as handle:
        return column in pq.read_schema(handle).names


def score_labels(out: str | os.PathLike | Location, label_column: str, normal_value: Any,
                 score_column: str = names.RECON_ERROR) -> dict[str, Any]:
    """ROC-AUC and PR-AUC of ``score_column`` as a detector of rows whose label is not ``normal_value``.

    Raises:
        SeqaeError: no committed output, the column is missing, or one class is absent.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    outputs = committed_outputs(out)
    if not outputs:
        raise SeqaeError(f"{Location.of(out)}: no committed output to evaluate")
    tables = []
    for location in outputs:
        with location.filesystem.open_input_file(location.path) as handle:
            schema = pq.read_schema(handle)
            missing = [c for c in (label_column, score_column) if c not in schema.names]
            if missing:
                raise SeqaeError(f"{location}: column(s) {', '.join(missing)} missing; expected the label passed "
                                 f"through from the input, found {', '.join(schema.names)}")
            tables.append(pq.read_table(handle, columns=[label_column, score_column]))
    table = pa.concat_tables(tables)
    labels = table.column(label_column)
    anomalous = pc.fill_null(pc.not_equal(labels, pa.scalar(normal_value, labels.type)), True).to_numpy(
        zero_copy_only=False).astype(bool)
    scores = table.column(score_column).to_numpy().astype(np.float64)
    if anomalous.all() or not anomalous.any():
        raise SeqaeError(f"{Location.of(out)}: {label_column} has one class only ({int(anomalous.sum())} of "
                         f"{len(anomalous)} rows differ from {normal_value!r}); ROC-AUC needs both")
    return {"rows": len(scores), "anomalous": int(anomalous.sum()), "score": score_column,
            "label_column": label_column, "normal_value": normal_value,
            "roc_auc": round(float(roc_auc_score(anomalous, scores)), 4),
            "pr_auc": round(float(average_precision_score(anomalous, scores)), 4)}
