"""A model-based test of the commit protocol: random arrivals, renames, deletions, changes of the run
identity (max_length), runs through ``embed`` and through the per-shard path the flows take
(``prepare_embed`` + ``embed_shard``), concurrent ``embed_shard`` calls for one shard, and kills at
every write step, on a local folder and on an S3 server.

After every step the committed state is consistent (each entry's files hold what it says, no source
counted twice); after every run that was not killed it accounts every input row exactly once
(written, rejected or in a quarantined file) and equals a clean run's in a fresh folder.
"""

import dataclasses
import itertools
import os
import tempfile
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import seqae.infer.stages as stages
from seqae.config import EmbedConfig
from seqae.errors import SeqaeError
from seqae.infer import InferenceModel, embed, embed_shard
from seqae.infer.commit import OutputFolder
from seqae.infer.job import prepare_embed
from seqae.io import AtomicParquetWriter, read_metadata
from seqae.storage import Location, read_json

pytestmark = pytest.mark.slow  # the trained model of tests/conftest.py

CPU = EmbedConfig(device="cpu", workers=1, read_batch_size=7)
NAMES = ["a.parquet", "a.pq", "b.parquet", "sub/c.parquet"]


class Killed(BaseException):
    """The process died at a write step (raised past every ``except Exception``)."""


def contents(make_sine_table):
    """Input files: clean rows of mixed lengths, one with a bad row, one that breaks the contract."""
    table = make_sine_table(n=40, length=12, seed=11)
    bad = table.slice(20, 10).to_pydict()
    bad["values"][2] = [1.0, float("nan"), 2.0]
    return [table.slice(0, 10), table.slice(10, 10), pa.table(bad, schema=table.schema),
            pa.table({"id": [1, 2], "values": [["x"], ["y"]]})]


def rows_of(location: Location) -> int:
    with location.filesystem.open_input_file(location.path) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def committed_state(out: Location) -> dict:
    """What a reader of the folder sees, checked for consistency on the way."""
    folder, state, sources = OutputFolder(out), {}, []
    for name in folder.entry_names():
        entry = folder.read_entry(name)
        data = folder.data_file(name)
        assert data.is_file(), f"{name}: entry without its data file"
        with data.filesystem.open_input_file(data.path) as handle:
            table = pq.read_table(handle)
        assert table.num_rows == entry["rows_written"], name
        assert read_metadata(data)["attempt"] == entry["attempt"], f"{name}: data file of another attempt"
        rejects = folder.rejects_file(name)
        rejected = rows_of(rejects) if rejects.is_file() else 0
        assert rejected == entry["rows_rejected"], f"{name}: {rejected} rejected rows on file, entry says " \
                                                   f"{entry['rows_rejected']}"
        assert entry["rows_in"] == entry["rows_written"] + entry["rows_rejected"]
        state[name] = ("committed", entry["source"], entry["rows_in"], table.to_pylist())
        sources.append(entry["source"])
    quarantine = folder.quarantine_dir
    for info in quarantine.children():
        if info.base_name.endswith(".json"):
            record = read_json(Location(out.filesystem, info.path, info.path))
            state[info.base_name[:-5]] = ("quarantined", record["shard"], record["rows"])
            sources.append(record["shard"])
    assert len(sources) == len(set(sources)), f"a source counted twice: {sorted(sources)}"
    return state


class CommitMachine(RuleBasedStateMachine):
    model_dir: Path
    models: list[InferenceModel]
    tables: list[pa.Table]
    make_out: staticmethod

    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="seqae-model-"))
        self.data = self.root / "data"
        self.data.mkdir()
        self.out = self.make_out()
        self.identity = 0
        self.mtime = itertools.count(1_700_000_000)

    # -- the inputs -----------------------------------------------------------------------------
    def present(self) -> list[str]:
        return [n for n in NAMES if (self.data / n).is_file()]

    @rule(name=st.sampled_from(NAMES), content=st.integers(0, 3))
    def arrive(self, name, content):
        path = self.data / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.tables[content], path)
        stamp = next(self.mtime)
        os.utime(path, (stamp, stamp))  # a new fingerprint even within one clock tick

    @precondition(lambda self: self.present())
    @rule(pick=st.integers(0, 9))
    def delete(self, pick):
        present = self.present()
        (self.data / present[pick % len(present)]).unlink()

    @precondition(lambda self: self.present())
    @rule(pick=st.integers(0, 9), to=st.sampled_from(NAMES))
    def rename(self, pick, to):
        present = self.present()
        (self.data / to).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.data / present[pick % len(present)], self.data / to)

    @rule(identity=st.integers(0, 1))
    def change_identity(self, identity):
        self.identity = identity  # max_length changes: every shard is recomputed

    # -- the runs -------------------------------------------------------------------------------
    def run_shards(self):
        model = self.models[self.identity]
        for planned in prepare_embed(str(self.data), self.out).selected:
            embed_shard(model, planned.shard, self.out, CPU, output_name=planned.output)

    def run_embed(self, out=None):
        embed(self.model_dir, str(self.data), out or self.out, CPU, data_config=self.models[self.identity].data)

    @precondition(lambda self: self.present())
    @rule(path=st.sampled_from(["embed", "shards"]))
    def run(self, path):
        self.run_embed() if path == "embed" else self.run_shards()
        self.check_accounted()

    @precondition(lambda self: self.present())
    @rule(step=st.integers(1, 12))
    def killed_run(self, step):
        calls = itertools.count(1)
        patches = [(stages, "write_rejects"), (AtomicParquetWriter, "commit"), (OutputFolder, "commit"),
                   (OutputFolder, "withdraw")]
        saved = [(owner, attr, getattr(owner, attr)) for owner, attr in patches]

        def dying(real):
            def step_or_die(*args, **kwargs):
                if next(calls) == step:
                    raise Killed
                return real(*args, **kwargs)
            return step_or_die

        for owner, attr, real in saved:
            setattr(owner, attr, dying(real))
        try:
            self.run_shards()
        except Killed:
            pass
        finally:
            for owner, attr, real in saved:
                setattr(owner, attr, real)

    @precondition(lambda self: self.present())
    @rule(pick=st.integers(0, 9), identities=st.tuples(st.integers(0, 1), st.integers(0, 1)))
    def concurrent(self, pick, identities):
        planned = prepare_embed(str(self.data), self.out).shards
        target = planned[pick % len(planned)]
        errors = []

        def one(identity):
            try:
                embed_shard(self.models[identity], target.shard, self.out, CPU, output_name=target.output)
            except SeqaeError as exc:  # a detected conflict; nothing of that attempt counts
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in identities]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors  # the shard lock serialises them: no conflict is even reached

    # -- what must hold -------------------------------------------------------------------------
    @invariant()
    def consistent(self):
        committed_state(self.out)

    def check_accounted(self):
        state = committed_state(self.out)
        expected = {str(self.data / n): rows_of(Location.of(self.data / n)) for n in self.present()}
        found = {entry[1]: entry[2] for entry in state.values()}
        assert found == expected, (found, expected)
        clean = self.make_out()
        self.run_embed(clean)
        assert state == committed_state(clean)


@pytest.fixture()
def machine(model_dir, make_sine_table):
    CommitMachine.model_dir = model_dir
    base = InferenceModel.open(model_dir, CPU)
    CommitMachine.models = [base, InferenceModel.open(model_dir, CPU, data_config=dataclasses.replace(
        base.data, max_length=9))]
    CommitMachine.tables = contents(make_sine_table)
    return CommitMachine


SETTINGS = dict(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))


def test_commit_protocol_on_a_local_folder(machine, tmp_path):
    counter = itertools.count()
    machine.make_out = staticmethod(lambda: Location.of(tmp_path / f"out-{next(counter)}"))
    run_state_machine_as_test(machine, settings=settings(max_examples=8, stateful_step_count=10, **SETTINGS))


def test_commit_protocol_on_s3(machine, s3):
    counter = itertools.count()
    machine.make_out = staticmethod(lambda: Location.of(f"s3://{s3.bucket}/out-{next(counter)}"))
    run_state_machine_as_test(machine, settings=settings(max_examples=3, stateful_step_count=6, **SETTINGS))
