"""A catalogue of bad input, each kind mixed with good shards, each with its expected outcome.

Every case checks the promise of the embed job: the good shards are committed, a bad row is rejected
with its reason (never dropped), a bad file is quarantined with a one-line reason (never fatal), and
rows in = rows written + rows rejected + rows in quarantined files.
"""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.config import DataConfig, EmbedConfig
from seqae.errors import ChecksumError, ModelDirError, SeqaeError
from seqae.infer import committed_outputs, embed

pytestmark = pytest.mark.slow  # uses the trained model of tests/conftest.py (min_length 3, max_length 24)

CPU = EmbedConfig(device="cpu")
SEQ = pa.list_(pa.float32())


def rows(values, keys=None, typ=SEQ, key_type=pa.int64(), labels=True):
    keys = list(range(100, 100 + len(values))) if keys is None else keys
    columns = {"id": pa.array(keys, key_type), "values": pa.array(values, typ)}
    if labels:
        columns = {"id": columns["id"], "label": pa.array([1] * len(values), pa.int32()), "values": columns["values"]}
    return pa.table(columns)


GOOD = [[float(i % 5) for i in range(10)]] * 3

# name -> (the bad shard's table, the reject reasons expected in it)
ROW_CASES = {
    "nan": (rows([*GOOD, [1.0, float("nan"), 2.0, 3.0]]), {"non_finite": 1}),
    "infinity": (rows([*GOOD, [1.0, float("inf"), 2.0, 3.0]]), {"non_finite": 1}),
    "float32_max_sentinel": (rows([*GOOD, [1.0, 3.4e38, 2.0, 3.0]]), {"out_of_range": 1}),
    "beyond_float32": (rows([*GOOD, [1.0, 1e300, 2.0, 3.0]], typ=pa.list_(pa.float64())), {"out_of_range": 1}),
    "null_sequence": (rows([*GOOD, None]), {"null_sequence": 1}),
    "null_value": (rows([*GOOD, [1.0, None, 2.0, 3.0]]), {"null_value": 1}),
    "empty_sequence": (rows([*GOOD, []]), {"empty": 1}),
    "too_short_for_the_horizon": (rows([*GOOD, [1.0, 2.0]]), {"too_short": 1}),
    "longer_than_recorded_max_length": (rows([*GOOD, [0.5] * 100_000]), {"too_long": 1}),
    "null_key": (rows([*GOOD, [1.0, 2.0, 3.0]], keys=[1, 2, 3, None]), {"null_key": 1}),
    "integer_values_are_cast": (rows([[1, 2, 3, 4]] * 3, typ=pa.list_(pa.int32())), {}),
    "wrong_inner_feature_count": (rows([[[1.0], [2.0], [3.0]], [[1.0], [2.0, 2.5], [3.0]]],
                                       typ=pa.list_(pa.list_(pa.float32()))), {"feature_count": 1}),
    "large_list_values": (rows(GOOD, typ=pa.large_list(pa.float32())), {}),
    "several_problems_in_one_batch": (rows([[1.0, float("nan"), 2.0], None, [1.0], [1.0, 2.0, 3.0], [3.4e38] * 5]),
                                      {"non_finite": 1, "null_sequence": 1, "too_short": 1, "out_of_range": 1}),
}


def write_bad_bytes(path: Path, kind: str, good_file: Path) -> None:
    data = good_file.read_bytes()
    path.write_bytes({"text": b"id,values\n1,2\n", "empty": b"", "truncated": data[: len(data) // 2],
                      "footer_only": data[-200:]}[kind])


# name -> (how the bad file is made, text its quarantine reason must contain)
FILE_CASES = {
    "not_parquet": (lambda p, g: write_bad_bytes(p, "text", g), "cannot be read as Parquet"),
    "zero_bytes": (lambda p, g: write_bad_bytes(p, "empty", g), "cannot be read as Parquet"),
    "truncated": (lambda p, g: write_bad_bytes(p, "truncated", g), "cannot be read as Parquet"),
    "footer_only": (lambda p, g: write_bad_bytes(p, "footer_only", g), "cannot be read as Parquet"),
    "values_missing": (lambda p, g: pq.write_table(pa.table({"id": [1], "label": pa.array([1], pa.int32()),
                                                             "seq": [[1.0]]}), p),
                       "column 'values': column is missing"),
    "key_missing": (lambda p, g: pq.write_table(pa.table({"label": pa.array([1], pa.int32()), "values": [[1.0]]}), p),
                    "column 'id': column is missing"),
    "values_of_strings": (lambda p, g: pq.write_table(rows([["a", "b", "c"]], typ=pa.list_(pa.string())), p),
                          "column 'values': wrong type"),
    "values_a_string": (lambda p, g: pq.write_table(rows(["1,2,3"], typ=pa.string()), p), "column 'values': wrong type"),
    "values_a_number": (lambda p, g: pq.write_table(rows([1.5], typ=pa.float64()), p), "column 'values': wrong type"),
    "fixed_size_feature_count": (lambda p, g: pq.write_table(rows([[[1.0, 2.0]] * 4],
                                                                  typ=pa.list_(pa.list_(pa.float32(), 2))), p),
                                 "wrong feature count"),
}

# Shards are checked against the model's contract, never against each other: a file whose
# pass-through columns differ from its neighbours' is embedded with its own columns.
CONTRACT_ALLOWS = {
    "passthrough_of_another_type": lambda p: pq.write_table(rows(GOOD).set_column(1, "label", pa.array(["x"] * 3)), p),
    "extra_passthrough_column": lambda p: pq.write_table(rows(GOOD).append_column("extra", pa.array([1, 2, 3])), p),
}


@pytest.mark.parametrize("case", sorted(CONTRACT_ALLOWS))
@pytest.mark.parametrize("sorts", ["first", "last"])
def test_a_shard_unlike_its_neighbours_but_within_the_contract_is_embedded(case, sorts, model_dir, two_good,
                                                                          tmp_path):
    CONTRACT_ALLOWS[case](two_good / ("0.parquet" if sorts == "first" else "c.parquet"))
    report = embed(model_dir, str(two_good), tmp_path / "out", CPU)
    reconciles(report)
    assert not report.quarantined and report.totals["shards_done"] == 3


@pytest.fixture()
def two_good(tmp_path, make_sine_table):
    data = tmp_path / "data"
    data.mkdir()
    table = make_sine_table(n=40, length=12, seed=2)
    pq.write_table(table.slice(0, 20), data / "a.parquet")
    pq.write_table(table.slice(20, 20), data / "b.parquet")
    return data


def reconciles(report) -> None:
    t = report.totals
    assert t["rows_in"] == t["rows_written"] + t["rows_rejected"] + t.get("rows_quarantined", 0)
    outputs = committed_outputs(report.out)
    assert {"a.parquet", "b.parquet"} <= {loc.name for loc in outputs}
    # over the folder too: its state counts every committed row, and the data files hold exactly those
    state = json.loads((Path(report.out) / "_seqae" / "state.json").read_text())["totals"]
    assert state["rows_in"] == state["rows_written"] + state["rows_rejected"] + state["rows_quarantined"]
    assert state["rows_written"] == sum(pq.read_metadata(loc.path).num_rows for loc in outputs)


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_bad_rows_are_rejected_with_their_reason(case, model_dir, two_good, tmp_path):
    table, reasons = ROW_CASES[case]
    pq.write_table(table, two_good / "c.parquet")
    report = embed(model_dir, str(two_good), tmp_path / "out", CPU)
    reconciles(report)
    c = next(s for s in report.shards if s.shard.endswith("c.parquet"))
    assert (c.status, c.rows_in, c.rows_rejected) == ("done", table.num_rows, sum(reasons.values()))
    rejects_file = tmp_path / "out" / "rejects" / "c.rejects.parquet"
    found = pq.read_table(rejects_file).column("reason").to_pylist() if rejects_file.exists() else []
    assert {r: found.count(r) for r in set(found)} == reasons
    if reasons:
        detail = pq.read_table(rejects_file)
        assert all(detail.column("detail").to_pylist()) and detail.column("key").null_count <= reasons.get("null_key", 0)


@pytest.mark.parametrize("keys, key_type, written", [
    ([b"\xff\x01", b"ok", b"\x00"], pa.binary(), "00"),
    ([{"a": 1}, {"a": 2}, {"a": 3}], pa.struct([("a", pa.int64())]), "{'a': 3}"),
])
def test_keys_of_any_type_reach_the_rejects_as_text(keys, key_type, written, model_dir, tmp_path):
    (tmp_path / "data").mkdir()
    pq.write_table(rows([*GOOD[:2], None], keys=keys, key_type=key_type), tmp_path / "data" / "k.parquet")
    report = embed(model_dir, str(tmp_path / "data"), tmp_path / "out", CPU)
    assert report.totals["rows_written"] == 2 and report.totals["rows_rejected"] == 1
    assert pq.read_table(tmp_path / "out" / "rejects" / "k.rejects.parquet").column("key").to_pylist() == [written]


def test_a_long_outlier_does_not_pad_its_batch(tmp_path):
    from seqae.data import ShardReader, resolve_shards

    pq.write_table(rows([*GOOD, [0.5] * 100_000]), tmp_path / "x.parquet")
    (batch, rejects), = list(ShardReader(resolve_shards(str(tmp_path))[0], DataConfig(max_length=24)))
    assert batch.values.shape == (3, 10, 1) and rejects.column("detail").to_pylist() == [
        "expected at most 24 steps, found 100000"]


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_files_are_quarantined_and_the_rest_committed(case, model_dir, two_good, tmp_path):
    make, reason = FILE_CASES[case]
    make(two_good / "c.parquet", two_good / "a.parquet")
    report = embed(model_dir, str(two_good), tmp_path / "out", CPU)
    reconciles(report)
    (bad,) = report.quarantined
    assert bad.shard.endswith("c.parquet") and reason in bad.error and "\n" not in bad.error
    record = json.loads((tmp_path / "out" / "_seqae" / "quarantine" / "c.parquet.json").read_text())
    assert record["reason"] == bad.error
    assert "c.parquet" not in {loc.name for loc in committed_outputs(tmp_path / "out")}
    with pytest.raises(SeqaeError, match=reason.split(":")[0].replace("'", ".")):
        embed(model_dir, str(two_good), tmp_path / "fast", EmbedConfig(device="cpu", fail_fast=True))


def test_a_fixed_file_leaves_quarantine_on_the_rerun(model_dir, two_good, tmp_path):
    (two_good / "c.parquet").write_text("not parquet")
    assert len(embed(model_dir, str(two_good), tmp_path / "out", CPU).quarantined) == 1
    pq.write_table(rows(GOOD), two_good / "c.parquet")
    report = embed(model_dir, str(two_good), tmp_path / "out", CPU)
    assert not report.quarantined and report.totals["shards_done"] == 1 and report.totals["shards_skipped"] == 2
    assert not (tmp_path / "out" / "_seqae" / "quarantine" / "c.parquet.json").exists()


def test_an_empty_shard_is_committed_with_zero_rows(model_dir, two_good, tmp_path):
    pq.write_table(rows(GOOD).slice(0, 0), two_good / "c.parquet")
    report = embed(model_dir, str(two_good), tmp_path / "out", CPU)
    reconciles(report)
    assert pq.read_metadata(tmp_path / "out" / "embeddings" / "c.parquet").num_rows == 0


def test_colliding_names_keep_every_row(model_dir, tmp_path, make_sine_table):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    table = make_sine_table(n=40, length=12, seed=4)
    for i, rel in enumerate(["x.parquet", "x.pq", "a/b.parquet", "a__b.parquet"]):
        pq.write_table(table.slice(i * 10, 10), data / rel)
    report = embed(model_dir, str(data), tmp_path / "out", CPU)
    outputs = committed_outputs(tmp_path / "out")
    assert len(outputs) == 4 and report.totals["rows_written"] == 40
    assert sum(pq.read_metadata(loc.path).num_rows for loc in outputs) == 40


def test_hive_partitions_keep_their_rejects_apart(tmp_path):
    from seqae.scan import scan

    for part in ("d=1", "d=2"):
        (tmp_path / "data" / part).mkdir(parents=True)
        pq.write_table(rows([*GOOD, None]), tmp_path / "data" / part / "part-0.parquet")
    report = scan(str(tmp_path / "data"), rejects_dir=tmp_path / "checked")
    assert report.totals["rows_rejected"] == 2
    written = sorted(p.name for p in (tmp_path / "checked" / "_rejects").iterdir())
    assert written == ["d=1__part-0.rejects.parquet", "d=2__part-0.rejects.parquet"]


def test_an_empty_shard_sorting_first_does_not_fix_the_feature_count(tmp_path):
    from seqae.scan import scan

    nested = pa.list_(pa.list_(pa.float32()))
    pq.write_table(rows([], typ=nested), tmp_path / "a.parquet")
    pq.write_table(rows([[[1.0, 2.0, 3.0]] * 4] * 5, typ=nested), tmp_path / "b.parquet")
    report = scan(str(tmp_path))
    assert report.num_features == 3 and report.totals["rows_rejected"] == 0


def test_a_symlink_loop_reads_each_file_once(model_dir, two_good, tmp_path):
    os.symlink("..", two_good / "loop")
    report = embed(model_dir, str(two_good), tmp_path / "out", CPU)
    assert report.totals["shards"] == 2 and report.totals["rows_in"] == 40


def test_out_that_is_a_file_and_a_locked_out_are_one_line_errors(model_dir, two_good, tmp_path):
    from seqae.infer.commit import OutputFolder

    (tmp_path / "file").write_text("")
    with pytest.raises(SeqaeError, match="--out is a file"):
        embed(model_dir, str(two_good), tmp_path / "file", CPU)
    folder = OutputFolder(tmp_path / "busy")
    folder.create()
    with folder.lock(exclusive=True), pytest.raises(SeqaeError, match="another seqae run is writing to this folder"):
        embed(model_dir, str(two_good), tmp_path / "busy", CPU)


def copy_model(model_dir: Path, to: Path) -> Path:
    to.mkdir()
    for f in model_dir.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


@pytest.mark.parametrize("case, error, message", [
    ("metadata_a_list", ModelDirError, "expected a JSON object written by seqae train, found list"),
    ("metadata_without_data", ModelDirError, "missing key(s) data"),
    ("metadata_truncated", ModelDirError, "not a valid seqae.json"),
    ("metadata_not_utf8", ModelDirError, "not UTF-8"),
    ("scorer_tampered", ChecksumError, "the file changed after export"),
    ("features_disagree_with_the_onnx", ModelDirError, "feature_names: expected a list of 3 name(s) (model.num_features), found list"),
    ("not_exported", ModelDirError, "not exported; run `seqae export"),
])
def test_bad_model_directories_are_one_line_errors(case, error, message, model_dir, two_good, tmp_path):
    model = copy_model(model_dir, tmp_path / "m")
    meta_path = model / "seqae.json"
    meta = json.loads(meta_path.read_text())
    if case == "metadata_a_list":
        meta_path.write_text("[]")
    elif case == "metadata_without_data":
        meta.pop("data")
        meta_path.write_text(json.dumps(meta))
    elif case == "metadata_truncated":
        meta_path.write_text(meta_path.read_text()[:100])
    elif case == "metadata_not_utf8":
        meta_path.write_bytes(b"\xff\xfe{")
    elif case == "scorer_tampered":
        (model / "scorer.onnx").write_bytes((model / "scorer.onnx").read_bytes() + b"\0")
    elif case == "features_disagree_with_the_onnx":
        meta["model"]["num_features"] = 3
        meta_path.write_text(json.dumps(meta))
    elif case == "not_exported":
        meta.pop("export")
        meta_path.write_text(json.dumps(meta))
    with pytest.raises(error) as raised:
        embed(model, str(two_good), tmp_path / "out", CPU)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_long_layout_unsorted_file_is_quarantined_and_sentinels_rejected(tmp_path):
    from seqae.data import ShardReader, resolve_shards

    config = DataConfig(layout="long", key_column="s", time_column="t", feature_columns=("x",), window=4)
    pq.write_table(pa.table({"s": ["a"] * 8, "t": np.arange(8), "x": [1, 2, 3e38, 4, 5, 6, 7, 8.0]}), tmp_path / "a.parquet")
    batches = list(ShardReader(resolve_shards(str(tmp_path / "a.parquet"))[0], config))
    reasons = [r for _, rej in batches for r in rej.column("reason").to_pylist()]
    assert reasons == ["out_of_range"] and sum(len(b) for b, _ in batches) == 1
