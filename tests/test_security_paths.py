"""Paths from outside (an event, a shell) are checked on their text against the data root before
anything is opened (issue #21), and `python -m flows` refuses with one line and exit code 2."""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.errors import SeqaeError
from seqae.storage import within

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1]}), root / "sub" / "a.parquet")
    (tmp_path / "outside.parquet").write_bytes(b"PAR1 not really PAR1")
    return root


@pytest.mark.parametrize("given", ["{root}/sub/a.parquet", "file://{root}/sub/a.parquet", "{root}//sub/./a.parquet",
                                   "{root}/sub/new.parquet"])
def test_a_path_inside_the_root_is_taken(data, given):
    location = within(given.format(root=data), str(data))
    assert location.path == os.path.normpath(given.format(root=data).removeprefix("file://"))


@pytest.mark.parametrize("given, root, message", [
    ("{root}/../outside.parquet", "{root}", "{given}: '..' is refused in a path that must lie inside the data root "
     "{root}; expected a path under it, found one that climbs out"),
    ("file://{root}/%2e%2e/outside.parquet", "{root}", "{given}: '..' is refused in a path that must lie inside the "
     "data root {root}; expected a path under it, found one that climbs out"),
    ("/etc/passwd", "{root}", "{given}: not inside the data root {root}; expected a path under {root}"),
    ("{root}x/a.parquet", "{root}", "{given}: not inside the data root {root}; expected a path under {root}"),
    ("s3://bucket{root}/a.parquet", "{root}", "{given}: not inside the data root {root}; expected a path under {root}"),
    ("{root}/sub/a.parquet", "{root}/other/*.parquet", "{given}: not inside the data root {root}/other/*.parquet; "
     "expected a path under {root}/other"),
    ("{root}/sub/*.parquet", "{root}", "{given}: expected one file inside the data root {root}, found a wildcard"),
    ("s3://other/data/a.parquet", "s3://bucket/data", "{given}: not inside the data root s3://bucket/data; expected "
     "a path under /bucket/data"),
])
def test_a_path_outside_the_root_is_refused_on_its_text(data, given, root, message):
    given, root = given.format(root=data), root.format(root=data)
    with pytest.raises(SeqaeError) as caught:
        within(given, root)
    assert str(caught.value) == message.format(given=given, root=data)


def test_a_symbolic_link_out_of_the_root_is_refused(data, tmp_path):
    (data / "sub" / "link.parquet").symlink_to(tmp_path / "outside.parquet")
    (data / "escape").symlink_to(tmp_path)
    for given in (data / "sub" / "link.parquet", data / "escape" / "outside.parquet"):
        with pytest.raises(SeqaeError) as caught:
            within(str(given), str(data))
        assert str(caught.value) == (f"{given}: leads out of the data root {data} through a symbolic link; "
                                     "expected a file inside it")


def test_nothing_is_opened_before_the_text_is_checked(data, monkeypatch):
    from seqae import storage

    opened = []
    monkeypatch.setattr(storage, "filesystem_of", lambda uri: opened.append(uri))
    monkeypatch.setattr(storage.os.path, "realpath", lambda path: opened.append(path))
    monkeypatch.setattr(storage.Location, "of", classmethod(lambda cls, where: opened.append(where)))
    with pytest.raises(SeqaeError):
        within("s3://other-bucket/secret-plans.parquet", "s3://bucket/data")
    with pytest.raises(SeqaeError):
        within("/etc/shadow", str(data))
    assert opened == []


def flows(*args, env=None):
    return subprocess.run([sys.executable, "-m", "flows", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "SEQAE_DATA": "", **(env or {})})


def test_emit_shard_landed_refuses_what_is_not_a_parquet_file_of_the_data_root(data, tmp_path):
    (data / "notes.txt").write_text("x")
    (data / "fake.parquet").write_text("not parquet")
    (data / "_hidden.parquet").write_bytes((data / "sub" / "a.parquet").read_bytes())
    cases = {
        "/etc/passwd": f"error: /etc/passwd: not inside the data root {data}; expected a path under {data}",
        f"{data}/notes.txt": f"error: {data}/notes.txt: expected a Parquet data file (.parquet, .parq, .pq, a name "
                             "not starting with _ or .), found the name 'notes.txt'",
        f"{data}/_hidden.parquet": f"error: {data}/_hidden.parquet: expected a Parquet data file (.parquet, .parq, "
                                   ".pq, a name not starting with _ or .), found the name '_hidden.parquet'",
        f"{data}/missing.parquet": f"error: {data}/missing.parquet: expected a Parquet file, found no file there",
        f"{data}/fake.parquet": f"error: {data}/fake.parquet: expected a Parquet file, found no Parquet magic bytes "
                                "(PAR1) at its start and end",
        "s3://AKIA:abc/def+ghi@bucket/x.parquet": "error: s3://***@bucket/x.parquet: credentials in a URI are refused "
                                                  "(user info (KEY:SECRET@));",
    }
    for path, line in cases.items():
        result = flows("emit-shard-landed", path, "--data", str(data))
        assert result.returncode == 2, (path, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(line), result.stderr
        assert "def+ghi" not in result.stderr and not result.stdout
    result = flows("emit-shard-landed", "/etc/passwd", env={"SEQAE_DATA": str(data)})
    assert result.returncode == 2 and result.stderr.startswith("error: /etc/passwd: not inside the data root")


def test_emit_shard_landed_checks_then_emits(data, monkeypatch, capsys):
    from flows import __main__ as entry
    from flows import events

    emitted = []
    monkeypatch.setattr(events, "emit_shard_landed", lambda path: emitted.append(path) or {"path": path})
    entry.emit_shard_landed_cmd(str(data / "sub" / "a.parquet"), str(data))
    assert emitted == [str(data / "sub" / "a.parquet")]


@pytest.mark.parametrize("args, line", [
    (["promote", "{tmp}/no-model", "--models", "{tmp}/models"], "error: "),  # the registry's own words
    (["promote", "s3://KEY:Zq9s3cr3t/x@bucket/m", "--models", "{tmp}/models"],
     "error: s3://***@bucket/m: credentials in a URI are refused (user info (KEY:SECRET@));"),
    # the registry takes URIs (issue #26), with the same credential rules as the data
    (["promote", "{tmp}/m", "--models", "s3://bucket/models?secret_key=Zq9s3cr3t/x"],
     "error: s3://bucket/models?secret_key=***: credentials in a URI are refused (query key 'secret_key');"),
    (["pipeline", "--data", "s3://bucket/d#secret_key=Zq9s3cr3t/x", "--models", "{tmp}/m", "--out", "{tmp}/o"],
     "error: s3://bucket/d#secret_key=***: credentials in a URI are refused (fragment key 'secret_key');"),
    (["serve", "--data", "{tmp}/d", "--models", "{tmp}/m", "--out", "s3://bucket/o?session_token=Zq9s3cr3t/x"],
     "error: s3://bucket/o?session_token=***: credentials in a URI are refused (query key 'session_token');"),
])
def test_flows_entry_points_refuse_with_one_line_and_exit_2(tmp_path, args, line):
    result = flows(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(line.format(tmp=tmp_path)), result.stderr
    assert "Zq9s3cr3t" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists() and not list(tmp_path.glob("s3*"))
