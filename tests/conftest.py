import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")



def sine_table(n=96, length=12, seed=0, vary=True, num_features=1):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(length // 2, length + 1, size=n) if vary else np.full(n, length)
    rows = []
    for i, m in enumerate(lengths):
        t = np.arange(m)[:, None] + rng.uniform(0, 6)
        seq = np.sin(t * (0.5 + 0.1 * np.arange(num_features)))
        rows.append(seq.astype(np.float32) if num_features > 1 else seq[:, 0].astype(np.float32))
    typ = pa.list_(pa.list_(pa.float32())) if num_features > 1 else pa.list_(pa.float32())
    return pa.table({"id": np.arange(n, dtype=np.int64), "label": np.ones(n, np.int32),
                     "values": pa.array([r.tolist() for r in rows], typ)})


@pytest.fixture(scope="session")
def make_sine_table():
    return sine_table


@pytest.fixture(scope="session")
def sine_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sine")
    pq.write_table(sine_table(), path / "part-0.parquet")
    return path
