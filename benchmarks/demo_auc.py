"""ROC-AUC of recon_error as an anomaly score on the `make demo` outputs (label 1 = normal).

    python benchmarks/demo_auc.py [demo]

Reports all 5000 beats and the beats the model never trained on: abnormal ones plus the normal
ones held out by the training split (same seeded key hash as `seqae train`). A stopgap until the
evaluation issue brings thresholds and metrics.
"""

import json
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
from sklearn.metrics import roc_auc_score

from seqae.modeldir import ModelInfo
from seqae.registry import ModelRegistry
from seqae.train import split_of


def roc_auc(scores, positive) -> float:
    return float(roc_auc_score(positive, scores))


def main(demo: str = "demo") -> None:
    model_dir = ModelRegistry(Path(demo) / "models").current_dir("default")  # the model make demo promoted
    train = ModelInfo.read(model_dir).metadata["training"]["config"]
    table = duckdb.sql(f"SELECT id, label, recon_error FROM read_parquet('{demo}/out/embeddings/*.parquet')").arrow()
    table = table.read_all() if hasattr(table, "read_all") else table
    ids, labels = table.column("id").to_numpy(), table.column("label").to_numpy()
    scores = table.column("recon_error").to_numpy()
    abnormal = labels != 1
    unseen = abnormal | split_of(pa.array(ids), train["seed"], train["validation_fraction"])
    print(json.dumps({"rows": len(ids), "roc_auc_all": round(roc_auc(scores, abnormal), 4),
                      "rows_not_trained_on": int(unseen.sum()),
                      "roc_auc_not_trained_on": round(roc_auc(scores[unseen], abnormal[unseen]), 4)}))


if __name__ == "__main__":
    main(*sys.argv[1:])
