import numpy as np
import pyarrow.parquet as pq
import pytest

from seqae.datasets import load_dataset, write_dataset
from seqae.errors import ConfigError


def test_ecg5000_is_complete_and_typed():
    table = load_dataset("ecg5000")
    assert table.num_rows == 5000
    assert str(table.schema.field("values").type) == "list<item: float>"
    labels = table.column("label").to_numpy()
    assert (labels == 1).sum() == 2919 and set(np.unique(labels)) == {1, 2, 3, 4, 5}
    assert table.column("id").to_pylist() == list(range(5000))
    first = np.asarray(table.column("values")[0].as_py())
    assert first.shape == (140,) and first[:2].tolist() == pytest.approx([-0.11252183, -2.8272038])


def test_write_shards_and_refuse_to_overwrite(tmp_path):
    paths = write_dataset("ecg5000", tmp_path, shards=3)
    assert [p.name for p in paths] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(p).num_rows for p in paths] == [1667, 1666, 1667]
    with pytest.raises(ConfigError, match="already holds 3 Parquet file"):
        write_dataset("ecg5000", tmp_path)
    assert len(write_dataset("ecg5000", tmp_path, shards=2, overwrite=True)) == 2
    assert len(list(tmp_path.glob("*.parquet"))) == 2


def test_ucr_anomaly_writes_a_clean_training_part_and_a_labelled_test_part(tmp_path):
    from seqae.datasets import write_long_dataset

    paths = write_long_dataset("ucr-anomaly", tmp_path)
    train, test = pq.read_table(paths["train"]), pq.read_table(paths["test"])
    assert train.column_names == ["series", "time", "value", "is_anomaly"]
    assert train.num_rows == 1200 and sum(train.column("is_anomaly").to_pylist()) == 0
    assert test.num_rows == 6301 and test.column("time").to_pylist()[0] == 1200
    labelled = [t for t, a in zip(test.column("time").to_pylist(), test.column("is_anomaly").to_pylist()) if a]
    assert labelled == list(range(4187, 4199))
    with pytest.raises(ConfigError, match="already holds 1 Parquet file"):
        write_long_dataset("ucr-anomaly", tmp_path)
    write_long_dataset("ucr-anomaly", tmp_path, overwrite=True)


def test_write_shards_to_an_object_store_and_never_to_a_local_folder_named_after_it(s3, tmp_path, monkeypatch):
    """A URI is written where it points (the ``s3`` fixture's moto server), never as ``./s3:/...``."""
    import pyarrow.fs as pafs

    from seqae.datasets import write_long_dataset
    from seqae.errors import SeqaeError
    from seqae.storage import Location

    monkeypatch.chdir(tmp_path)
    uri = f"s3://{s3.bucket}/shards"
    paths = write_dataset("ecg5000", uri, shards=2)
    assert paths == [f"{uri}/part-00000.parquet", f"{uri}/part-00001.parquet"]
    folder = Location.of(uri)
    with folder.filesystem.open_input_file(f"{folder.path}/part-00001.parquet") as file:
        assert pq.read_metadata(file).num_rows == 2500
    with pytest.raises(ConfigError, match=rf"^{uri}: already holds 2 Parquet file\(s\); pass overwrite=True"):
        write_dataset("ecg5000", uri)
    assert len(write_dataset("ecg5000", uri, shards=3, overwrite=True)) == 3
    stored = sorted(i.base_name for i in folder.filesystem.get_file_info(pafs.FileSelector(folder.path)))
    assert stored == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert write_long_dataset("ucr-anomaly", f"s3://{s3.bucket}/long") == {
        "train": f"s3://{s3.bucket}/long/train/part-00000.parquet",
        "test": f"s3://{s3.bucket}/long/test/part-00000.parquet"}

    with pytest.raises(SeqaeError, match=r"^s3://nosuchbucket/shards: expected an existing bucket 'nosuchbucket' to "
                                         r"write the dataset to, found none; create it first \(seqae creates no "
                                         r"bucket\)$"):
        write_dataset("ecg5000", "s3://nosuchbucket/shards")
    with pytest.raises(SeqaeError, match=rf"^s3://\*\*\*@{s3.bucket}/shards: credentials in a URI are refused") as caught:
        write_dataset("ecg5000", f"s3://{s3.key_id}:{s3.secret}@{s3.bucket}/shards")
    assert s3.secret not in str(caught.value)
    with pytest.raises(ConfigError, match=r"^ s3://bucket/shards: expected a local path or a URI"):
        write_dataset("ecg5000", " s3://bucket/shards")
    assert list(tmp_path.iterdir()) == []  # no local folder named s3:, nothing written here
