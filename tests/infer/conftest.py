import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.config import ModelConfig, TrainConfig


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
