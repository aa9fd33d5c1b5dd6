import os
import types
import urllib.request

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.config import ModelConfig, TrainConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")



@pytest.fixture(autouse=True)
def _root_logging_as_it_was():
    """The root logger's handlers and level as before each test. An in-process CLI call (typer's
    CliRunner) runs ``logging.basicConfig(force=True, stream=sys.stderr)`` with the runner's stream,
    which closes when the call returns; a later log record from another thread of the same worker
    (Prefect's log shipper, through httpx) would then print '--- Logging error ---'. Only the plain
    stream handlers a test added are taken off (pytest's own capture handlers come and go per phase)."""
    import logging

    root = logging.getLogger()
    handlers, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    root.setLevel(level)


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
def prefect_harness():
    """One temporary Prefect server (SQLite) for every test that runs flows or renders work-pool
    templates. Up to 180 s to start: it took over 60 s on a 2-core machine at load 10 (two pytest-xdist
workers beside other jobs); a healthy one answers in 10-25 s, so the bound costs nothing when all is well."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def make_sine_table():
    return sine_table


@pytest.fixture()
def same_and_shifted(tmp_path, make_sine_table):
    """Two folders of sine rows: ``same`` as the model saw, ``shifted`` scaled and moved (drift)."""

    def make(n: int, seed: int, scale: float, offset: float):
        table = make_sine_table(n=n, length=12, seed=seed)
        moved = pa.array([[v * scale + offset for v in row] for row in table.column("values").to_pylist()],
                         pa.list_(pa.float32()))
        for name, t in (("same", table), ("shifted", table.set_column(2, "values", moved))):
            (tmp_path / name).mkdir()
            pq.write_table(t, tmp_path / name / "p.parquet")
        return tmp_path / "same", tmp_path / "shifted"

    return make


@pytest.fixture(scope="session")
def sine_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sine")
    pq.write_table(sine_table(), path / "part-0.parquet")
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, sine_dir):
    """A tiny exported composite model (trained once per test run)."""
    from seqae.export import export
    from seqae.train import train

    path = tmp_path_factory.mktemp("model")
    train(str(sine_dir), path, model_config=ModelConfig(units=4, mode="composite", horizon=2),
          train_config=TrainConfig(batch_size=32, max_epochs=2))
    export(path)
    return path


@pytest.fixture()
def mixed_dir(tmp_path, make_sine_table):
    """Three shards of mixed lengths, one with bad rows."""
    table = make_sine_table(n=90, length=12, seed=5)
    data = tmp_path / "in"
    data.mkdir()
    pq.write_table(table.slice(0, 30), data / "a.parquet")
    pq.write_table(table.slice(30, 30), data / "b.parquet")
    bad = table.slice(60, 30).to_pydict()
    bad["values"][3] = [1.0, float("nan"), 2.0, 3.0]
    bad["values"][7] = None
    bad["values"][9] = [1.0, 2.0]  # too short to encode one step and predict two
    pq.write_table(pa.table(bad, schema=table.schema), data / "c.parquet")
    return data, table


@pytest.fixture()
def s3(monkeypatch):
    """A moto S3 server on a free port of 127.0.0.1, one bucket, and the environment pointing at it.
    Yields ``bucket``, ``secret`` (the secret key, which tests check never shows up in messages,
    logs or outputs), ``key_id`` and ``endpoint``."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    bucket, secret = "seqae-test", "s3cr3t-never-printed-0123456789"
    env = {"AWS_ACCESS_KEY_ID": "seqae-test-key", "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # moto keeps its buckets per process, not per server: start each test from an empty store.
    urllib.request.urlopen(urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"))
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield types.SimpleNamespace(bucket=bucket, secret=secret, key_id=env["AWS_ACCESS_KEY_ID"],
                                endpoint=env["AWS_ENDPOINT_URL"])
    server.stop()
