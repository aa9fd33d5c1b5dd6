"""A secret in a URI is refused and masked whatever characters it holds (issue #21): user info, query
and fragment, before it reaches a log, an exception, a manifest or a flow run's parameters."""

import json
import re
import string

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from seqae.errors import SeqaeError
from seqae.storage import CREDENTIALS_PATTERN, Location, filesystem_of, redact_uri, refuse_credentials

#: What AWS secret keys are made of, plus what a careless secret or a URI parser trips over.
SECRET_CHARACTERS = string.ascii_letters + string.digits + "+/" + "@/:?#%"
FORMS = [
    "s3://AKIAIOSFODNN7EXAMPLE:{}@bucket/data",
    "s3://AKIAIOSFODNN7EXAMPLE:{}@bucket/data/*.parquet",
    "s3://bucket/data?secret_key={}",
    "s3://bucket/data?region=eu-west-1&session_token={}&scheme=https",
    "s3://bucket/data#secret_key={}",
    "s3://bucket/data?region=eu-west-1#AWS_SECRET_ACCESS_KEY={}",
    "gs://bucket/data?access_token={}",
    "file:///srv/data#secret_key={}",
    "s3://bucket/data?endpoint_override=http://minio:{}@localhost:9000",
]


def gates():
    from seqae.data import resolve_shards

    return [Location.of, filesystem_of, refuse_credentials, resolve_shards]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=st.text(SECRET_CHARACTERS, min_size=16, max_size=48), form=st.sampled_from(FORMS))
@example(secret="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", form=FORMS[0])
@example(secret="abc/def+ghi@jkl:mno?pqr#stu%2Fvw", form=FORMS[0])
@example(secret="S3CR?T#secret_key=@xyz/////////", form=FORMS[4])
def test_a_secret_is_refused_and_never_shown_whatever_it_holds(secret, form):
    uri = form.format(secret)
    assert secret not in redact_uri(uri)
    assert re.search(CREDENTIALS_PATTERN, uri)  # the flow parameters' JSON Schema refuses it too
    for gate in gates():
        with pytest.raises(SeqaeError) as caught:
            gate(uri)
        message = str(caught.value)
        assert "credentials in a URI are refused" in message, (gate, message)
        assert secret not in message and "\n" not in message
        assert caught.value.__cause__ is None and caught.value.__context__ is None


@pytest.mark.parametrize("uri, shown, carried", [
    ("s3://AKIA:abc/def+ghi@bucket/x", "s3://***@bucket/x", "user info (KEY:SECRET@)"),
    ("s3://AKIA:a@b/c@bucket/x", "s3://***@bucket/x", "user info (KEY:SECRET@)"),
    ("s3://bucket/x#secret_key=abc/def", "s3://bucket/x#secret_key=***", "fragment key 'secret_key'"),
    ("s3://bucket/x?region=eu#token=ab?c&scheme=http", "s3://bucket/x?region=eu#token=***&scheme=http",
     "fragment key 'token'"),
    ("s3://bucket/x?AWS%5FSECRET%5FACCESS%5FKEY=zz", "s3://bucket/x?AWS%5FSECRET%5FACCESS%5FKEY=***",
     "query key 'AWS_SECRET_ACCESS_KEY'"),
    ("s3://bucket/x?X-Amz-Signature=abc&X-Amz-Date=1", "s3://bucket/x?X-Amz-Signature=***&X-Amz-Date=1",
     "query key 'X-Amz-Signature'"),
])
def test_the_message_names_what_was_carried_and_masks_it(uri, shown, carried):
    assert redact_uri(uri) == shown
    with pytest.raises(SeqaeError) as caught:
        Location.of(uri)
    assert str(caught.value).startswith(f"{shown}: credentials in a URI are refused ({carried}); ")


@pytest.mark.parametrize("uri", ["hdfs://etl@namenode:8020/data", "s3://bucket/p@v2/x.parquet",
                                 "s3://bucket/data?region=eu-west-1&scheme=http", "s3://bucket/a&token=1/x"])
def test_what_carries_no_secret_is_left_alone(uri):
    assert redact_uri(uri) == uri
    refuse_credentials(uri)


@pytest.mark.parametrize("path", ["/srv/a?token=1", "/srv/we@home:1/x", "data/#secret_key=x"])
def test_a_local_path_is_no_uri(path):
    refuse_credentials(path)  # '?', '#' and '@' are plain characters in a file name


def test_the_json_schema_pattern_refuses_what_the_check_refuses():
    schema = {"type": "string", "not": {"pattern": CREDENTIALS_PATTERN}}
    for uri in ("s3://K:S/x@b/d", "s3://b/d#secret_key=x", "s3://b/d?Session_Token=x", "s3://b/d?a%5Fb=1"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(uri, schema)
    for uri in ("s3://bucket/data", "/srv/data/part-0.parquet", "hdfs://etl@nn:8020/d", "s3://b/d?region=eu"):
        jsonschema.validate(uri, schema)


@pytest.mark.slow
def test_a_fragment_secret_never_reaches_the_manifest(model_dir, sine_dir, tmp_path):
    from seqae.config import EmbedConfig
    from seqae.infer import embed

    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    with pytest.raises(SeqaeError) as caught:
        embed(model_dir, f"file://{sine_dir}#secret_key={secret}", tmp_path / "out", EmbedConfig(device="cpu"))
    assert secret not in str(caught.value)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not [p for p in written if secret in p.read_bytes().decode(errors="replace")], written
    assert secret not in json.dumps([str(p) for p in written])
