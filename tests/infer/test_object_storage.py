"""Inputs, model and outputs on s3://, against a real S3-compatible HTTP server (moto's server mode)
started on 127.0.0.1 by the test. Credentials and the endpoint come from the environment only."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from seqae.config import EmbedConfig
from seqae.infer import InferenceModel, committed_outputs, embed
from seqae.infer.commit import OutputFolder
from seqae.storage import Location

slow = pytest.mark.slow  # trains the tiny model (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


def upload(local: Path, uri: str) -> str:
    filesystem, path = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)
    return uri


def objects(prefix: str) -> dict[str, bytes]:
    """Every object under an s3:// prefix with its bytes."""
    location = Location.of(prefix)
    infos = location.filesystem.get_file_info(pafs.FileSelector(location.path, recursive=True, allow_not_found=True))
    return {i.path: Location(location.filesystem, i.path, i.path).read_bytes()
            for i in infos if i.type == pafs.FileType.File}


def tables(out) -> dict[str, object]:
    return {loc.name: pq.read_table(loc.path, filesystem=loc.filesystem) for loc in committed_outputs(out)}


@slow
def test_embed_s3_to_s3_equals_the_local_run_and_a_rerun_skips(s3, model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    config = EmbedConfig(device="cpu", read_batch_size=11)
    local = embed(model_dir, str(data), tmp_path / "local", config)
    model_uri = upload(model_dir, f"s3://{s3.bucket}/models/m")
    data_uri = upload(data, f"s3://{s3.bucket}/data")
    out_uri = f"s3://{s3.bucket}/out"

    first = embed(model_uri, data_uri, out_uri, config)
    assert first.totals == local.totals == {"shards": 3, "shards_done": 3, "shards_skipped": 0, "rows_in": 90,
                                            "rows_written": 87, "rows_rejected": 3}
    remote, expected = tables(out_uri), tables(tmp_path / "local")
    assert sorted(remote) == sorted(expected) == ["a.parquet", "b.parquet", "c.parquet"]
    for name, table in expected.items():
        assert remote[name].equals(table), name
    assert InferenceModel.open(model_uri, config).identity == InferenceModel.open(model_dir, config).identity

    again = embed(model_uri, data_uri, out_uri, config)
    assert again.totals["shards_skipped"] == 3 and again.totals["shards_done"] == 0
    stored = objects(f"s3://{s3.bucket}/out")
    assert f"{s3.bucket}/out/_seqae/state.json" in stored and f"{s3.bucket}/out/_seqae/manifest/b.parquet.json" in stored
    assert sorted(path for path in stored if path.endswith(".parquet") and "/embeddings/" in path) == [
        f"{s3.bucket}/out/embeddings/{n}" for n in ("a.parquet", "b.parquet", "c.parquet")]
    assert not [path for path, body in stored.items() if s3.secret.encode() in body]  # nor in metadata, nor manifests


KILLER = """
import os, signal, sys
from seqae.config import EmbedConfig
import seqae.lease
from seqae.infer import embed
from seqae.infer.commit import OutputFolder

seqae.lease.LEASE_SECONDS = 3.0  # the dead run's lease runs out soon
commit = OutputFolder.commit

def commit_or_die(self, name, record):
    if name == "b.parquet":  # b's data file is whole on S3; die before its manifest entry
        os.kill(os.getpid(), signal.SIGKILL)
    commit(self, name, record)

OutputFolder.commit = commit_or_die
embed(sys.argv[1], sys.argv[2], sys.argv[3], EmbedConfig(device="cpu", workers=1, read_batch_size=11))
"""


@slow
def test_a_killed_run_on_s3_leaves_no_committed_partial_output(s3, model_dir, mixed_dir, tmp_path):
    data, _ = mixed_dir
    config = EmbedConfig(device="cpu", read_batch_size=11)
    embed(model_dir, str(data), tmp_path / "clean", config)
    model_uri = upload(model_dir, f"s3://{s3.bucket}/models/m")
    data_uri = upload(data, f"s3://{s3.bucket}/data")
    out_uri = f"s3://{s3.bucket}/out"

    killed = subprocess.run([sys.executable, "-c", KILLER, model_uri, data_uri, out_uri], cwd=ROOT,
                            env={**os.environ}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    stored = objects(out_uri)
    # The data file of b is there (S3 has no rename: it was written under its final name) but it
    # has no manifest entry, so it does not count: only a is committed.
    assert f"{s3.bucket}/out/embeddings/b.parquet" in stored
    assert f"{s3.bucket}/out/_seqae/manifest/b.parquet.json" not in stored
    assert [loc.name for loc in committed_outputs(out_uri)] == ["a.parquet"]
    assert OutputFolder(out_uri).entry_names() == ["a.parquet"]

    from seqae.lease import FolderBusyError

    with pytest.raises(FolderBusyError, match="another seqae run is writing to this folder"):
        embed(model_uri, data_uri, out_uri, config)  # the dead run's lease is still live
    import time

    time.sleep(3.5)  # then it runs out, and the rerun takes it over
    rerun = embed(model_uri, data_uri, out_uri, config)
    assert {s.output: s.status for s in rerun.shards} == {"a.parquet": "skipped", "b.parquet": "done",
                                                          "c.parquet": "done"}
    assert rerun.totals["rows_in"] == rerun.totals["rows_written"] + rerun.totals["rows_rejected"] == 90
    remote, clean = tables(out_uri), tables(tmp_path / "clean")
    assert sorted(remote) == sorted(clean)
    for name, table in clean.items():
        assert remote[name].equals(table), name
    assert s3.secret not in killed.stdout + killed.stderr


@slow
def test_cli_errors_and_logs_never_print_the_secret(s3, model_dir, tmp_path):
    def seqae(*args):
        return subprocess.run([sys.executable, "-m", "seqae.cli", "embed", *args, "--device", "cpu"], cwd=ROOT,
                              env={**os.environ}, capture_output=True, text=True, timeout=300)

    cases = [
        # credentials in the URI: refused before any work, the value masked
        ["--model", str(model_dir), "--data", f"s3://{s3.bucket}/data?secret_key={s3.secret}", "--out", str(tmp_path / "o")],
        ["--model", f"s3://key:{s3.secret}@{s3.bucket}/models/m", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        # credentials from the environment, then a store that answers "no such key" or a bad
        # request: the messages name the URI only
        ["--model", f"s3://{s3.bucket}/models/none", "--data", f"s3://{s3.bucket}/data", "--out", f"s3://{s3.bucket}/o"],
        ["--model", str(model_dir), "--data", f"s3://{s3.bucket}/data", "--out", f"s3://{s3.bucket}/o"],
        ["--model", str(model_dir), "--data", f"s3://{s3.bucket}/data?endpoint_override=127.0.0.1:9&scheme=http",
         "--out", str(tmp_path / "o")],
    ]
    results = [seqae(*args) for args in cases]
    for args, result in zip(cases, results):
        assert result.returncode != 0, (args, result.stdout)
        assert s3.secret not in result.stdout + result.stderr, args
    assert results[0].stderr.startswith(f"error: s3://{s3.bucket}/data?secret_key=***: credentials in a URI are refused "
                                         "(query key 'secret_key')"), results[0].stderr
    assert results[1].stderr.startswith(f"error: s3://***@{s3.bucket}/models/m: credentials in a URI are refused "
                                         "(user info (KEY:SECRET@))"), results[1].stderr
    assert f"s3://{s3.bucket}/models/none holds no seqae.json" in results[2].stderr, results[2].stderr


def test_a_second_writer_on_s3_is_refused_until_the_lease_runs_out(s3):
    """The lease: a conditional create; a live one refuses the next run (FolderBusyError), a dead
    holder's (expired) is taken over by a conditional replace, and the old holder finds it lost."""
    import time

    from seqae.lease import FolderBusyError, Lease

    out = Location.of(f"s3://{s3.bucket}/out")
    first = Lease(out, ttl_s=1.5, holder="run one").acquire()
    with pytest.raises(FolderBusyError, match=rf"^s3://{s3.bucket}/out: another seqae run is writing to this folder "
                                              r"\(run one\); wait for it to finish or give another --out$"):
        Lease(out, holder="run two").acquire()
    with pytest.raises(FolderBusyError, match="another seqae run is writing to this folder"):
        with OutputFolder(out).lock(exclusive=False):  # an embed_shard call refuses too
            pass
    time.sleep(2.0)  # renewed meanwhile: still held
    with pytest.raises(FolderBusyError, match=r"\(run one\)"):
        Lease(out, holder="run two").acquire()
    first._stop.set()  # the holder dies: no more renewals
    first._thread.join()
    time.sleep(1.7)
    second = Lease(out, ttl_s=30, holder="run two").acquire()
    assert first.renew() is False
    with pytest.raises(FolderBusyError, match=r"this run's lease on the folder was lost \(it was taken over"):
        first.check()
    first.release()  # a lost lease is not deleted: it is another run's now
    with pytest.raises(FolderBusyError, match=r"\(run two\)"):
        Lease(out).acquire()
    second.release()
    with OutputFolder(out).lock(exclusive=True):  # free again
        pass


def test_an_s3_entry_is_created_only_if_absent(s3):
    from seqae.infer import CommitConflictError

    folder = OutputFolder(f"s3://{s3.bucket}/out")
    folder.commit("a.parquet", {"rows_in": 1})
    with pytest.raises(CommitConflictError, match="another writer committed it first"):
        folder.commit("a.parquet", {"rows_in": 2})
    assert folder.read_entry("a.parquet")["rows_in"] == 1


@slow
def test_a_second_embed_into_one_s3_folder_refuses(s3, model_dir, mixed_dir):
    from seqae.lease import FolderBusyError

    data, _ = mixed_dir
    out = f"s3://{s3.bucket}/out"
    with OutputFolder(out).lock(exclusive=True):  # the first run, holding its lease
        with pytest.raises(FolderBusyError, match=rf"^s3://{s3.bucket}/out: another seqae run is writing"):
            embed(model_dir, str(data), out, EmbedConfig(device="cpu"))
    assert committed_outputs(out) == []
    assert embed(model_dir, str(data), out, EmbedConfig(device="cpu")).totals["rows_in"] == 90

