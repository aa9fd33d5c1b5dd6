"""Object-store credentials from a Prefect Secret block (flows/credentials.py): the embed flow runs from
s3:// to s3:// with none in its environment, and the secret never shows in its logs or its result."""

import asyncio
import json
import os
import time

import pyarrow.fs as pafs
import pytest

from seqae.config import EmbedConfig
from seqae.infer import committed_outputs

pytestmark = pytest.mark.slow  # trains the tiny model


@pytest.fixture()
def fresh_credentials(monkeypatch):
    from flows import credentials

    monkeypatch.setattr(credentials, "_loaded", set())
    return credentials


def upload(local, uri):
    filesystem, path = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)


def test_embed_flow_takes_s3_credentials_from_a_secret_block(prefect_harness, s3, fresh_credentials, model_dir,
                                                             mixed_dir, monkeypatch):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.definitions import embed

    data, _ = mixed_dir
    upload(model_dir, f"s3://{s3.bucket}/models/m")
    upload(data, f"s3://{s3.bucket}/data")
    Secret(value={"AWS_ACCESS_KEY_ID": s3.key_id, "AWS_SECRET_ACCESS_KEY": s3.secret}).save("seqae-s3-test",
                                                                                              overwrite=True)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("SEQAE_STORAGE_SECRET_BLOCK", "seqae-s3-test")

    state = embed(f"s3://{s3.bucket}/data", f"s3://{s3.bucket}/out", model_dir=f"s3://{s3.bucket}/models/m",
                  config=EmbedConfig(device="cpu"), model_name="sine", return_state=True)  # drift check included
    summary = state.result()
    assert summary["totals"] == {"shards": 3, "shards_done": 3, "shards_skipped": 0, "rows_in": 90,
                                 "rows_written": 87, "rows_rejected": 3}
    assert [loc.name for loc in committed_outputs(f"s3://{s3.bucket}/out")] == ["a.parquet", "b.parquet", "c.parquet"]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == s3.secret  # set from the block, in this process
    assert summary["drift"]["rows"] == 87  # the drift check read the model's reference from s3:// too

    async def logs():
        async with get_client() as client:
            return await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])))

    deadline = time.time() + 30  # logs reach the server in batches
    while True:
        messages = [entry.message for entry in asyncio.run(logs())]
        if any("embedded 3 new shard(s)" in m for m in messages) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert any("embedded 3 new shard(s)" in m for m in messages), messages  # the run's own log, read back
    assert s3.secret not in json.dumps(summary) + "\n".join(messages)


def test_a_block_may_set_storage_variables_only(prefect_harness, fresh_credentials, monkeypatch):
    from prefect.blocks.system import Secret

    Secret(value={"AWS_ACCESS_KEY_ID": "k", "PATH": "/evil"}).save("seqae-bad-test", overwrite=True)
    Secret(value="just-a-string").save("seqae-string-test", overwrite=True)
    monkeypatch.setenv("SEQAE_STORAGE_SECRET_BLOCK", "seqae-bad-test")
    with pytest.raises(ValueError, match="seqae-bad-test: refusing to set PATH; expected only AWS_ACCESS_KEY_ID"):
        fresh_credentials.apply_storage_credentials()
    monkeypatch.setenv("SEQAE_STORAGE_SECRET_BLOCK", "seqae-string-test")
    with pytest.raises(ValueError, match="expected a Secret block holding a JSON object of environment variables, "
                                         "found a str"):
        fresh_credentials.apply_storage_credentials()
    monkeypatch.delenv("SEQAE_STORAGE_SECRET_BLOCK")
    assert fresh_credentials.apply_storage_credentials() == []
