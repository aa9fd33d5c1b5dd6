"""``train`` checks the bucket of a ``model_dir`` URI before it reads any data or loads TensorFlow:
a missing bucket or an unreachable store fails in one line at once, not at the upload after training
(trial 26: hours of training, then NO_SUCH_BUCKET). Against moto's S3 server (``s3`` fixture)."""

import importlib
import socket

import pytest

from seqae.errors import SeqaeError
from seqae.train import train

TRAIN_MODULE = importlib.import_module("seqae.train")  # the package's seqae.train is the function


class Started(Exception):
    """Raised by the stand-ins below: the preflight passed and the first step after it began."""


@pytest.fixture()
def no_training(monkeypatch):
    """``train`` stopped at its first step after the preflight: importing TensorFlow (``import_optional``)
    and reading the data (``plan_data``) raise ``Started`` instead."""
    def started(*args, **kwargs):
        raise Started

    monkeypatch.setattr(TRAIN_MODULE, "import_optional", started)
    monkeypatch.setattr(TRAIN_MODULE, "plan_data", started)


def test_a_missing_bucket_is_refused_before_any_data_is_read_or_tensorflow_loads(s3, sine_dir, no_training):
    with pytest.raises(SeqaeError, match=r"^s3://nosuchbucket/models/run-1: expected an existing bucket 'nosuchbucket' "
                                         r"to write the model directory to, found none; create it first \(seqae "
                                         r"creates no bucket\)$"):
        train(str(sine_dir), "s3://nosuchbucket/models/run-1")


def test_an_existing_bucket_passes_the_preflight(s3, sine_dir, no_training):
    with pytest.raises(Started):
        train(str(sine_dir), f"s3://{s3.bucket}/models/run-1")


def test_a_local_model_dir_needs_no_store(tmp_path, sine_dir, no_training):
    with pytest.raises(Started):
        train(str(sine_dir), tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_store_is_one_line_naming_aws_endpoint_url(sine_dir, no_training, monkeypatch):
    """A closed port (pyarrow's client retries for about 6 s before it gives up)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SeqaeError) as caught:
        train(str(sine_dir), "s3://bucket/models/run-1")
    message = str(caught.value)
    assert message.startswith("s3://bucket/models/run-1: cannot reach the bucket 'bucket' to check that it exists (")
    assert message.endswith(f"); check AWS_ENDPOINT_URL (set to http://127.0.0.1:{port}), the network and the "
                            "credentials")
    assert "\n" not in message
