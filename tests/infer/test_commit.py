"""The one place that decides whether a shard is done, and the output folder's bookkeeping."""

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.data import resolve_shards
from seqae.errors import SeqaeError
from seqae.infer import committed_outputs
from seqae.infer.commit import OutputFolder, RunIdentity
from seqae.io import output_names_for

IDENTITY = RunIdentity("m1", 3, "scorer.onnx", "ab" * 32, False, "c0ffee")


@pytest.fixture()
def committed(tmp_path):
    """An input shard and an output folder where it is committed under IDENTITY."""
    pq.write_table(pa.table({"id": [1, 2]}), tmp_path / "a.parquet")
    shard = resolve_shards(str(tmp_path / "a.parquet"))[0]
    folder = OutputFolder(tmp_path / "out")
    folder.create()
    pq.write_table(pa.table({"id": [1, 2]}), folder.data_file("a.parquet").path)
    folder.commit("a.parquet", {**IDENTITY.to_dict(), "fingerprint": shard.fingerprint, "rows_in": 2,
                                "rows_written": 2, "rows_rejected": 0})
    return shard, folder


def test_a_committed_shard_is_done(committed):
    shard, folder = committed
    done = folder.done(shard, "a.parquet", IDENTITY)
    assert (done.status, done.rows_in, done.rows_written, done.output) == ("skipped", 2, 2, "a.parquet")
    assert [loc.name for loc in committed_outputs(folder.location)] == ["a.parquet"]


@pytest.mark.parametrize("change", [{"model_id": "m2"}, {"model_version": 4}, {"onnx_file": "scorer.fp16.onnx"},
                                    {"onnx_sha256": "cd" * 32}, {"step_errors": True}, {"contract": "decaf"}])
def test_another_model_or_option_redoes_it(committed, change):
    shard, folder = committed
    assert folder.done(shard, "a.parquet", dataclasses.replace(IDENTITY, **change)) is None


def test_a_changed_input_or_a_missing_data_file_redoes_it(committed, tmp_path):
    shard, folder = committed
    pq.write_table(pa.table({"id": [1, 2, 3]}), tmp_path / "a.parquet")
    assert folder.done(resolve_shards(str(tmp_path / "a.parquet"))[0], "a.parquet", IDENTITY) is None
    folder.data_file("a.parquet").delete()
    assert folder.done(shard, "a.parquet", IDENTITY) is None
    assert committed_outputs(folder.location) == []


def test_data_files_without_an_entry_are_not_outputs(committed):
    _, folder = committed
    pq.write_table(pa.table({"id": [3]}), folder.data_file("b.parquet").path)  # an interrupted object-store write
    assert [loc.name for loc in committed_outputs(folder.location)] == ["a.parquet"]


def test_leftover_temporary_files_are_removed(committed):
    _, folder = committed
    leftover = folder.location.join("_seqae", "manifest", ".a.parquet.json.0123abcd.tmp")
    with leftover.filesystem.open_output_stream(leftover.path) as stream:
        stream.write(b"{")
    folder.remove_leftovers()
    assert not leftover.is_file() and folder.entry_file("a.parquet").is_file()


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(SeqaeError, match=r"x: --out is a file; expected a folder"):
        OutputFolder(tmp_path / "x").create()


def test_output_names_keep_the_path_below_the_common_folder(tmp_path):
    for rel in ("a/b.parquet", "a/c/d.pq", "e.parquet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [1]}), tmp_path / rel)
    shards = resolve_shards(str(tmp_path))
    assert sorted(output_names_for(shards).values()) == ["a__b.parquet", "a__c__d.parquet", "e.parquet"]
    assert list(output_names_for(shards[:1]).values()) == ["b.parquet"]


def test_one_embed_run_per_folder_while_shard_tasks_share_it(tmp_path):
    folder = OutputFolder(tmp_path / "out")
    folder.create()
    with folder.lock(exclusive=True):
        with pytest.raises(SeqaeError, match=r"out: another seqae run is writing to this folder \(seqae embed, "
                                             r"pid \d+, since .*\); wait for it to finish or give another --out"):
            with OutputFolder(tmp_path / "out").lock(exclusive=True):
                pass
    with folder.lock(exclusive=False), OutputFolder(tmp_path / "out").lock(exclusive=False):  # shard tasks
        with pytest.raises(SeqaeError, match="another seqae run is writing to this folder"):
            with OutputFolder(tmp_path / "out").lock(exclusive=True):
                pass
    with folder.lock(exclusive=True):  # free again
        pass


def test_output_names_do_not_change_when_a_new_folder_arrives(tmp_path):
    from seqae.infer import plan_outputs

    (tmp_path / "d" / "2024").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1]}), tmp_path / "d" / "2024" / "a.parquet")
    before = [name for _, name in plan_outputs(str(tmp_path / "d"), tmp_path / "out")]
    (tmp_path / "d" / "2025").mkdir()
    pq.write_table(pa.table({"id": [2]}), tmp_path / "d" / "2025" / "c.parquet")
    after = [name for _, name in plan_outputs(str(tmp_path / "d"), tmp_path / "out")]
    assert before == ["2024__a.parquet"] and after == ["2024__a.parquet", "2025__c.parquet"]


def test_tidy_removes_what_killed_writers_left_only_when_no_run_holds_the_folder(tmp_path):
    folder = OutputFolder(tmp_path / "out")
    folder.create()
    (tmp_path / "out" / "_seqae" / "manifest").mkdir()
    (tmp_path / "out" / "_seqae" / "staging").mkdir()
    left = [tmp_path / "out" / "_seqae" / "staging" / ".a.parquet.1a2b3c4d.tmp",
            tmp_path / "out" / "_seqae" / "manifest" / ".a.parquet.json.5e6f7a8b.tmp"]
    for path in left:
        path.write_bytes(b"partial")
    (tmp_path / "out" / "embeddings" / "a.parquet").write_bytes(b"committed elsewhere")
    with folder.lock(exclusive=False):  # an embed_shard call is writing: its temporary files are not leftovers
        assert folder.tidy() == []
    assert all(path.exists() for path in left)
    assert sorted(folder.tidy()) == sorted(str(p) for p in left)
    assert not any(path.exists() for path in left) and (tmp_path / "out" / "embeddings" / "a.parquet").exists()
    assert OutputFolder(tmp_path / "never-made").tidy() == []


def test_only_names_made_by_location_temporary_are_leftovers(tmp_path):
    folder = OutputFolder(tmp_path / "out")
    folder.create()
    notes, leftover = tmp_path / "out" / "embeddings" / ".my-notes.tmp", tmp_path / "out" / "embeddings" / ".a.parquet.0123abcd.tmp"
    notes.write_text("mine")
    leftover.write_bytes(b"partial")
    folder.remove_leftovers()
    assert notes.read_text() == "mine" and not leftover.exists()


def test_a_lock_file_that_is_a_symlink_is_refused_and_never_followed(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    folder = OutputFolder(tmp_path / "out")
    folder.create()
    (tmp_path / "out" / "_seqae" / "lock").symlink_to(victim)
    for exclusive in (True, False):
        with pytest.raises(SeqaeError, match=r"^.*out/_seqae/lock: the lock file is a symbolic link; expected a "
                                             r"regular file \(a lock is never followed\), remove the link$"):
            with folder.lock(exclusive=exclusive):
                pass
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("how", ["relative", "file-uri", "symlink"])
def test_an_output_folder_inside_the_data_is_never_read_as_input(tmp_path, monkeypatch, how):
    from seqae.infer.commit import plan_embed

    data = tmp_path / "data"
    (data / "out").mkdir(parents=True)
    pq.write_table(pa.table({"id": [1]}), data / "a.parquet")
    pq.write_table(pa.table({"id": [2]}), data / "out" / "a.parquet")  # an output of an earlier run
    monkeypatch.chdir(tmp_path)
    out = {"relative": "data/out", "file-uri": f"file://{data}/out", "symlink": str(tmp_path / "link")}[how]
    if how == "symlink":
        (tmp_path / "link").symlink_to(data / "out")
    plan = plan_embed("data" if how == "relative" else str(data), out)
    assert [p.shard.path for p in plan.shards] == [str(data / "a.parquet")]


def test_only_must_name_exactly_one_shard_of_the_data(tmp_path):
    from seqae.errors import ConfigError
    from seqae.infer.commit import plan_embed

    for name in ("a", "b"):
        pq.write_table(pa.table({"id": [1]}), tmp_path / f"{name}.parquet")
    out = tmp_path / "out"
    assert [p.output for p in plan_embed(str(tmp_path), out, only=str(tmp_path / "b.parquet")).selected] == ["b.parquet"]
    with pytest.raises(ConfigError, match=rf"^only: expected one Parquet file of {tmp_path}, got .* \(2 file\(s\)\)$"):
        plan_embed(str(tmp_path), out, only=str(tmp_path))
    with pytest.raises(ConfigError, match=r"^only: .*: expected one file inside the data root .*, found a wildcard$"):
        plan_embed(str(tmp_path), out, only=str(tmp_path / "*.parquet"))


def test_only_outside_the_data_is_refused_before_it_is_opened(tmp_path, monkeypatch):
    from seqae.errors import ConfigError
    from seqae.infer import commit
    from seqae.infer.commit import plan_embed

    pq.write_table(pa.table({"id": [1]}), tmp_path / "a.parquet")
    opened = []
    real = commit.resolve_shards
    monkeypatch.setattr(commit, "resolve_shards", lambda where: opened.append(where) or real(where))
    for outside in ("/etc/passwd", str(tmp_path / ".." / "x.parquet")):
        opened.clear()
        with pytest.raises(ConfigError, match=r"^only: "):
            plan_embed(str(tmp_path), tmp_path / "out", only=outside)
        assert outside not in opened


def _commit(folder, shard, name):
    pq.write_table(pa.table({"id": [1, 2]}), folder.data_file(name).path)
    folder.commit(name, {**IDENTITY.to_dict(), "source": shard.uri, "fingerprint": shard.fingerprint, "rows_in": 2,
                         "rows_written": 2, "rows_rejected": 0})


def test_outputs_of_renamed_or_deleted_sources_are_withdrawn(tmp_path):
    from seqae.infer.commit import plan_embed

    data = tmp_path / "data"
    data.mkdir()
    for name in ("x", "y"):
        pq.write_table(pa.table({"id": [1, 2]}), data / f"{name}.parquet")
    folder = OutputFolder(tmp_path / "out")
    folder.create()
    for p in plan_embed(str(data), folder.location).shards:
        _commit(folder, p.shard, p.output)
    (data / "y.parquet").unlink()  # deleted
    pq.write_table(pa.table({"id": [3]}), data / "x.pq")  # x.parquet is now written as x-<hash>.parquet
    plan = plan_embed(str(data), folder.location)
    assert folder.withdraw_stale(plan) == ["x.parquet", "y.parquet"]
    assert folder.entry_names() == [] and not folder.data_file("x.parquet").is_file()


def test_a_commit_over_another_writers_entry_is_a_conflict(committed):
    from seqae.infer import CommitConflictError

    shard, folder = committed
    with pytest.raises(CommitConflictError, match=r"out/_seqae/manifest/a.parquet.json: another writer committed it first "
                                                  r"while this run wrote it; expected no other writer"):
        folder.commit("a.parquet", {"rows_in": 1})
