import errno
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from seqae.errors import SeqaeError
from seqae.storage import (
    AtomicFile,
    Location,
    atomic_write,
    is_temporary,
    read_json,
    replace_directory,
    sha256_stream,
    utc_now,
    write_bytes,
    write_json,
)


def listing(path):
    return sorted(os.listdir(path))


@pytest.mark.parametrize("form", ["plain", "uri", "relative"])
def test_location_of_local_path_and_file_uri(tmp_path, monkeypatch, form):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "out" / "a.parquet"
    text = {"plain": str(target), "uri": f"file://{target}", "relative": "out/a.parquet"}[form]
    location = Location.of(text)
    assert location.path == str(target)
    assert location.uri == str(target)  # a file:// URI reads back as the local path
    assert str(location) == str(target)
    assert location.is_local and location.atomic_rename
    assert location.filesystem.type_name == "local"
    assert Location.of(location) is location


def test_location_join_parent_name(tmp_path):
    root = Location.of(tmp_path)
    child = root.join("a", "b.json")
    assert child.path == f"{tmp_path}/a/b.json" and child.uri == f"{tmp_path}/a/b.json"
    assert child.name == "b.json"
    assert child.parent.path == f"{tmp_path}/a" and child.parent.name == "a"
    assert child.parent.parent == root
    assert Location.of(f"{tmp_path}/dir/").name == "dir"


def test_location_on_a_non_local_filesystem_keeps_path_and_uri_apart(tmp_path):
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    location = Location(fs, "/d/x.bin", "mem://d/x.bin")
    assert not location.is_local and not location.atomic_rename
    assert location.join("y").uri == "mem://d/x.bin/y"
    assert location.parent == Location(fs, "/d", "mem://d")


def test_utc_now_format():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", utc_now())


@pytest.mark.parametrize("data", [b"", b"abc", os.urandom(3000)])
def test_sha256_stream_and_location_sha256_equal_hashlib(tmp_path, data):
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_stream(io.BytesIO(data).read, chunk_size=7) == expected
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert Location.of(path).sha256() == expected


def test_write_bytes_and_json_round_trip(tmp_path):
    location = write_bytes(tmp_path / "sub" / "a.bin", b"\x00\x01")
    assert location == Location.of(tmp_path / "sub" / "a.bin")
    assert location.read_bytes() == b"\x00\x01" and location.is_file()
    write_json(tmp_path / "a.json", {"path": Path("/x/y"), "n": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"path": "/x/y", "n": [1, 2]}
    write_json(tmp_path / "a.json", {"n": 3})  # replaces
    assert read_json(f"file://{tmp_path}/a.json") == {"n": 3}
    assert listing(tmp_path) == ["a.json", "sub"]


def test_atomic_write_writes_under_a_temporary_name_until_the_block_ends(tmp_path):
    target = tmp_path / "a.bin"
    with atomic_write(target) as stream:
        stream.write(b"partial")
        (name,) = listing(tmp_path)
        assert is_temporary(name) and name.startswith(".a.bin.")
        assert not target.exists()
    assert listing(tmp_path) == ["a.bin"]
    assert target.read_bytes() == b"partial"


@pytest.mark.parametrize("existing", [False, True])
def test_atomic_write_failure_leaves_neither_target_nor_temporary(tmp_path, existing):
    target = tmp_path / "a.bin"
    if existing:
        target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as stream:
            stream.write(b"new")
            raise RuntimeError("boom")
    assert listing(tmp_path) == (["a.bin"] if existing else [])
    if existing:
        assert target.read_bytes() == b"old"


def test_temporary_names():
    location = Location.of("/data/out.parquet")
    first, second = location.temporary(), location.temporary()
    assert first != second and first.parent == location.parent
    assert is_temporary(first.name) and re.fullmatch(r"\.out\.parquet\.[0-9a-f]{8}\.tmp", first.name)
    assert not is_temporary("out.parquet") and not is_temporary(".hidden") and not is_temporary("x.tmp")


def test_atomic_file_on_a_non_atomic_filesystem_writes_the_target_directly(tmp_path):
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    file = AtomicFile(Location(fs, "/d/x.bin", "sub://d/x.bin"))
    assert file.location == file.target
    with fs.open_output_stream(file.location.path) as stream:
        stream.write(b"direct")
    assert (tmp_path / "d" / "x.bin").read_bytes() == b"direct"  # visible before commit
    assert file.commit() == file.target
    assert listing(tmp_path / "d") == ["x.bin"]


def test_atomic_write_on_a_non_atomic_filesystem(tmp_path):
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    target = Location(fs, "/x.bin", "sub://x.bin")
    assert write_bytes(target, b"abc") == target
    assert listing(tmp_path) == ["x.bin"] and target.read_bytes() == b"abc"
    with pytest.raises(ValueError):
        with atomic_write(target) as stream:
            stream.write(b"zz")
            raise ValueError
    assert listing(tmp_path) == []  # abort removes the (half-written) target itself


def test_atomic_file_abort_is_idempotent_and_after_commit_a_no_op(tmp_path):
    file = AtomicFile(tmp_path / "a.bin")
    file.location.filesystem.open_output_stream(file.location.path).close()
    file.abort()
    file.abort()
    assert listing(tmp_path) == []
    file = AtomicFile(tmp_path / "b.bin")
    file.location.filesystem.open_output_stream(file.location.path).close()
    file.commit()
    file.abort()
    assert listing(tmp_path) == ["b.bin"]


def test_replace_directory_swaps_a_folder_in(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with replace_directory(target) as tmp:
        assert tmp.parent == tmp_path and is_temporary(tmp.name)
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # untouched until the block ends
    assert listing(tmp_path) == ["model"]
    assert listing(target) == ["new.txt"]


def test_replace_directory_creates_a_missing_target(tmp_path):
    target = tmp_path / "deep" / "model"
    with replace_directory(target) as tmp:
        (tmp / "a").write_text("a")
    assert listing(tmp_path / "deep") == ["model"] and listing(target) == ["a"]


def test_replace_directory_failure_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(KeyError):
        with replace_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise KeyError("x")
    assert listing(tmp_path) == ["model"]
    assert listing(target) == ["old.txt"]


@pytest.mark.parametrize("text, detail", [
    (b"{not json", "Expecting property name enclosed in double quotes at line 1"),
    (b'{"a": 1}\n\n[', "Extra data at line 3"),
    (b"", "Expecting value at line 1"),
])
def test_read_json_on_a_non_json_file_names_the_file(tmp_path, text, detail):
    path = tmp_path / "meta.json"
    path.write_bytes(text)
    with pytest.raises(SeqaeError) as err:
        read_json(path, "metadata file")
    assert str(err.value) == f"{path}: not a valid metadata file ({detail})"
    with pytest.raises(SeqaeError, match=r": not a valid JSON file \("):
        read_json(path)



def test_read_json_on_a_binary_file_is_a_seqae_error(tmp_path):
    path = tmp_path / "meta.json"
    path.write_bytes(b"\x80\x81\x82 binary")
    with pytest.raises(SeqaeError, match=rf"^{re.escape(str(path))}: not a valid JSON file"):
        read_json(path)


def test_read_json_round_trips_what_write_json_wrote(tmp_path):
    data = {"a": [1, 2.5, None, True], "b": {"c": "é"}}
    write_json(tmp_path / "x.json", data)
    assert json.loads((tmp_path / "x.json").read_text()) == data == read_json(tmp_path / "x.json")


@pytest.mark.parametrize("uri, shown, carried", [
    ("s3://KEY:wJalrXUtnFEMI@bucket/data", "s3://***@bucket/data", "user info (KEY:SECRET@)"),
    ("s3://bucket/data?access_key=KEY&secret_key=wJalrXUtnFEMI", "s3://bucket/data?access_key=***&secret_key=***",
     "query key 'access_key', query key 'secret_key'"),
    ("s3://bucket/data?session_token=wJalrXUtnFEMI&region=eu-west-1", "s3://bucket/data?session_token=***&region=eu-west-1",
     "query key 'session_token'"),
    ("gs://bucket/data?token=wJalrXUtnFEMI", "gs://bucket/data?token=***", "query key 'token'"),
])
def test_a_uri_with_credentials_is_refused_and_the_message_masks_them(uri, shown, carried):
    from seqae.data import resolve_shards
    from seqae.storage import redact_uri

    assert redact_uri(uri) == shown
    for given in (uri, uri.replace("/data", "/data/*.parquet")):
        for attempt in (Location.of, resolve_shards):
            with pytest.raises(SeqaeError) as caught:
                attempt(given)
            message = str(caught.value)
            assert message.startswith(f"{redact_uri(given)}: credentials in a URI are refused ({carried})"), message
            assert "wJalrXUtnFEMI" not in message and caught.value.__cause__ is None


def test_an_hdfs_user_name_is_no_secret_and_stays():
    from seqae.storage import redact_uri

    assert redact_uri("hdfs://etl@namenode:8020/data") == "hdfs://etl@namenode:8020/data"


class FullDisk:
    """A local-like filesystem whose output streams fail as a full disk does, on write or on close."""

    type_name = "local"

    def __init__(self, inner, on="write"):
        self.inner, self.on, self.deleted = inner, on, []

    def create_dir(self, path, recursive=True):
        self.inner.create_dir(path, recursive=recursive)

    def open_output_stream(self, path):
        disk = self

        class Stream:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                if disk.on == "close":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

            def write(self, data):
                if disk.on == "write":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return Stream()

    def delete_file(self, path):
        self.deleted.append(path)

    def move(self, source, target):
        self.inner.move(source, target)


@pytest.mark.parametrize("on", ["write", "close"])
def test_a_full_disk_is_one_line_naming_the_target(tmp_path, on):
    disk = FullDisk(pafs.LocalFileSystem(), on)
    target = Location(disk, f"{tmp_path}/out/a.bin", f"{tmp_path}/out/a.bin")
    with pytest.raises(OSError) as caught:
        write_bytes(target, b"abc")
    assert str(caught.value) == f"{tmp_path}/out/a.bin: cannot write this file: [Errno 28] No space left on device"
    assert caught.value.errno == errno.ENOSPC
    assert len(disk.deleted) == 1 and is_temporary(os.path.basename(disk.deleted[0]))  # the temporary file went


def test_an_error_that_is_no_os_error_passes_unchanged(tmp_path):
    with pytest.raises(KeyError, match="x"):
        with atomic_write(tmp_path / "a.bin"):
            raise KeyError("x")
