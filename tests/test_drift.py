"""When drift retrains (seqae.drift): enough rows, a large effect, one retrain per episode, a cooldown."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.drift import (
    CALM,
    DRIFT_NO_RETRAIN,
    DRIFT_RETRAIN,
    WAITING,
    DriftPolicy,
    DriftState,
    DriftStateConflictError,
    check_drift,
    decide,
    drift_state,
    read_state,
    record_retrain,
    retrain_needed,
    update_state,
)
from seqae.errors import ConfigError, SeqaeError
from seqae.storage import Location

HOUR = 3600.0
T0 = 1_800_000_000.0


def report(p=0.5, statistic=0.05, embedding_p=0.5, rows=2000):
    return {"rows": rows, "reference_rows": 500, "alpha": 0.01,
            "recon_error": {"test": "ks_2samp", "statistic": statistic, "p_value": p},
            "embedding": {"test": "ks_2samp per dimension, Bonferroni", "p_value": embedding_p}}


SHIFTED = report(p=1e-30, statistic=0.8, embedding_p=1e-20)
POLICY = DriftPolicy(min_rows=100, min_effect=0.2, cooldown_seconds=6 * HOUR, calm_checks=2)


def test_a_significant_but_small_difference_is_no_drift():
    """A shard with 3% anomalies: the KS test rejects on many rows, its statistic stays small."""
    state = DriftState()
    decision = decide(report(p=1e-4, statistic=0.04), state, POLICY, "m1", now=T0)
    assert (decision.verdict, decision.retrain) == (CALM, False)
    assert "but the effect is small: recon_error KS statistic 0.040 < min_effect 0.2" in decision.why
    assert state.episode is None


def test_one_retrain_per_episode_and_hysteresis_before_it_closes():
    state = DriftState()
    first = decide(SHIFTED, state, POLICY, "m1", now=T0)
    assert (first.verdict, first.retrain) == (DRIFT_RETRAIN, True) and first.episode == state.episode.id
    again = decide(SHIFTED, state, POLICY, "m1", now=T0 + 7 * HOUR)  # past the cooldown, same episode
    assert (again.verdict, again.retrain, again.episode) == (DRIFT_NO_RETRAIN, False, first.episode)
    assert "at most one retrain per episode" in again.why
    calm = decide(report(), state, POLICY, "m1", now=T0 + 8 * HOUR)
    assert calm.verdict == CALM and state.episode is not None  # one calm test does not close it
    decide(report(), state, POLICY, "m1", now=T0 + 9 * HOUR)
    assert state.episode is None
    later = decide(SHIFTED, state, POLICY, "m1", now=T0 + 10 * HOUR)
    assert later.retrain and later.episode != first.episode


def test_no_retrain_within_the_cooldown_even_in_a_new_episode():
    state = DriftState()
    assert decide(SHIFTED, state, POLICY, "m1", now=T0).retrain
    for t in (1, 2):
        decide(report(), state, POLICY, "m1", now=T0 + t * 60)
    assert state.episode is None
    within = decide(SHIFTED, state, POLICY, "m1", now=T0 + HOUR)
    assert (within.verdict, within.retrain) == (DRIFT_NO_RETRAIN, False)
    assert "cooldown until" in within.why
    assert decide(SHIFTED, state, POLICY, "m1", now=T0 + 7 * HOUR).retrain


@pytest.mark.parametrize("field, value, message", [
    ("alpha", 0, "alpha: expected a value in (0, 1), got 0"),
    ("alpha", 1.5, "alpha: expected a value in [0, 1), got 1.5"),
    ("min_rows", 0, "min_rows: expected a positive integer, got 0"),
    ("min_effect", 2, "min_effect: expected a value in [0, 1], got 2"),
    ("cooldown_seconds", -1, "cooldown_seconds: expected a value in [0, inf), got -1"),
    ("calm_checks", 0, "calm_checks: expected a positive integer, got 0"),
])
def test_policy_refuses_bad_values(field, value, message):
    with pytest.raises(ConfigError) as caught:
        DriftPolicy(**{field: value})
    assert str(caught.value) == message


def test_policy_round_trips_and_refuses_unknown_keys():
    assert DriftPolicy.from_dict(POLICY.to_dict()) == POLICY
    with pytest.raises(ConfigError, match="unknown key"):
        DriftPolicy.from_dict({"alpha": 0.01, "windo": 3})


@pytest.fixture(params=["local", "s3"])
def models_root(request, tmp_path):
    """The models root the drift state lives under: a local folder, or a prefix on moto's S3 server."""
    if request.param == "local":
        return tmp_path / "models"
    return f"s3://{request.getfixturevalue('s3').bucket}/models"


def test_a_retrain_that_waited_checks_it_is_still_needed(models_root):
    models = models_root
    assert retrain_needed(models, "m", None, None, "m1") == (True, "not triggered by drift (a schedule or by hand)")
    with drift_state(models, "m") as state:
        decision = decide(SHIFTED, state, POLICY, "m1", now=T0)
    needed, why = retrain_needed(models, "m", decision.episode, "m1", "m1")
    assert needed, why
    newer, why = retrain_needed(models, "m", decision.episode, "m1", "m2")
    assert not newer and why.startswith("model m2 was promoted after the drift against m1 was found")
    record_retrain(models, "m", decision.episode, "m2")
    handled, why = retrain_needed(models, "m", decision.episode, "m1", "m1")
    assert not handled and why == f"drift episode {decision.episode} was already handled: its retrain promoted m2"
    over, why = retrain_needed(models, "m", "another", "m1", "m1")
    assert not over and "is over" in why
    assert json.loads(Location.of(f"{models}/m/drift.json").read_bytes())["episode"]["handled_by"] == "m2"
    if isinstance(models, str):  # S3: nothing beside it but the state itself (no lock object)
        assert [i.base_name for i in Location.of(f"{models}/m").children()] == ["drift.json"]


def _pending(shard: str):
    """A change of the state that adds one pending shard (and says which it saw)."""
    def change(state: DriftState) -> int:
        before = len(state.pending)
        time.sleep(0.05)  # between the read and the write: concurrent updates overlap
        state.pending.append({"shard": shard, "key": shard, "rows": 1})
        return before
    return change


def test_concurrent_updates_of_the_drift_state_on_s3_are_all_kept(s3):
    """Eight writers at once: each read-modify-write lands (a lost race reads again and redoes it),
    none overwrites another's. Without the conditional write most of them would be lost."""
    root = f"s3://{s3.bucket}/models"
    start = threading.Barrier(8)

    def update(i):
        start.wait()
        return update_state(root, "m", _pending(f"s{i}"), max_tries=64)

    with ThreadPoolExecutor(8) as pool:
        seen_before = list(pool.map(update, range(8)))
    assert sorted(p["shard"] for p in read_state(root, "m").pending) == [f"s{i}" for i in range(8)]
    assert sorted(seen_before) == list(range(8))  # each saw the ones written before it, as if one at a time


def test_a_drift_state_that_keeps_changing_gives_up_naming_the_file(s3):
    from seqae.lease import ObjectStore

    root = f"s3://{s3.bucket}/models"
    location = Location.of(f"{root}/m/drift.json")
    update_state(root, "m", _pending("first"))
    tries = []

    def rival(state: DriftState) -> None:  # another run writes between every read and write of this one
        tries.append(len(tries))
        ObjectStore(location).put(location, json.dumps({**state.to_dict(), "seen": [f"r{len(tries)}"]}).encode())
        state.seen.append("mine")

    with pytest.raises(DriftStateConflictError, match=(
            r"^s3://seqae-test/models/m/drift\.json: 3 concurrent update\(s\) of the drift state of 'm' won every "
            r"try of this one \(the last: s3://seqae-test/models/m/drift\.json: expected the drift state unchanged "
            r"since read \(If-Match: \"[0-9a-f]+\"\), found it written by another run meanwhile; nothing was "
            r"written\); expected to write it within 3 tries\. Nothing of this change was recorded: rerun it$")):
        update_state(root, "m", rival, max_tries=3)
    assert tries == [0, 1, 2]
    assert read_state(root, "m").seen == ["r3"]  # the rival's last write, never this one's


def test_the_first_write_of_a_drift_state_is_a_create_if_absent(s3):
    root = f"s3://{s3.bucket}/models"
    location = Location.of(f"{root}/m/drift.json")

    def created_meanwhile(state: DriftState) -> None:
        if not location.is_file():
            location.filesystem.open_output_stream(location.path).close()  # an empty object: not ours to replace
        state.seen.append("mine")

    with pytest.raises(DriftStateConflictError, match=r"expected the drift state absent \(If-None-Match: \*\)"):
        with drift_state(root, "m") as state:
            created_meanwhile(state)
    assert location.read_bytes() == b""


def test_a_drift_check_that_lost_a_race_is_decided_again_without_testing_twice(s3, monkeypatch):
    """Another run's check lands while this one tests: this one re-reads, keeps both runs' shards and
    re-decides on the fresh state with the report it already has."""
    import sys

    import seqae.anomaly

    module = sys.modules["seqae.drift"]  # seqae.drift, the attribute, may be the function seqae.anomaly.drift
    root = f"s3://{s3.bucket}/models"
    location = Location.of(f"{root}/m/drift.json")
    calls = []

    def test_once(model_dir, shards, alpha, device):
        calls.append(list(shards))
        if len(calls) == 1:  # the other run's write, between this check's read and its write
            other = DriftState(seen=["other-shard"])
            with location.filesystem.open_output_stream(location.path) as stream:
                stream.write(json.dumps(other.to_dict()).encode())
        return SHIFTED

    monkeypatch.setattr(seqae.anomaly, "drift", test_once)
    monkeypatch.setattr(module, "_shard_key", lambda uri: f"key-of-{uri}")
    decision = check_drift("model", "m1", {"a.parquet": 150}, POLICY, models_root=root, name="m", now=T0)
    assert calls == [["a.parquet"]]  # tested once, whatever the retry
    assert (decision.verdict, decision.retrain) == (DRIFT_RETRAIN, True)
    state = read_state(root, "m")
    assert state.seen == ["other-shard", "key-of-a.parquet"] and state.episode.id == decision.episode


def test_a_drift_state_on_a_store_without_conditional_writes_is_refused():
    with pytest.raises(SeqaeError, match=r"^mock://models/m/drift\.json: the drift state needs conditional writes "
                                         r"\(S3\) or a local filesystem; found mock, which has none in pyarrow\.fs\. "
                                         r"Keep the models root on S3 or a local disk, or turn the drift check off "
                                         r"\(drift=None\)$"):
        update_state("mock:///models", "m", _pending("a"))


def test_a_drift_state_uri_with_credentials_is_refused_and_never_shown():
    with pytest.raises(SeqaeError, match=r"^s3://\*\*\*@bucket/models: credentials in a URI are refused") as caught:
        read_state("s3://AKIA:Zq9s3cr3t@bucket/models", "m")
    assert "Zq9s3cr3t" not in str(caught.value)


@pytest.fixture()
def shards(tmp_path, make_sine_table):
    """``write(name, n, seed, shifted)``: one shard of sine rows (moved: scaled and offset) under data/."""
    data = tmp_path / "data"
    data.mkdir()

    def write(name, n, seed, shifted=False):
        table = make_sine_table(n=n, length=12, seed=seed)
        if shifted:
            moved = [[3 * v + 4 for v in row] for row in table.column("values").to_pylist()]
            table = table.set_column(2, "values", pa.array(moved, pa.list_(pa.float32())))
        pq.write_table(table, data / name)
        return str(data / name)

    return write


@pytest.mark.slow
def test_small_normal_shards_never_retrain_a_shifted_batch_once(model_dir, shards, tmp_path):
    """The drift storm of issue #24: small normal shards wait and then test calm; a shifted batch
    requests one retrain; a second shifted batch in the same episode, none."""
    models = tmp_path / "models"
    policy = DriftPolicy(min_rows=100, min_effect=0.3, cooldown_seconds=HOUR)
    model_id = json.loads((model_dir / "seqae.json").read_text())["model_id"]

    def check(new, now):
        return check_drift(model_dir, model_id, new, policy, models_root=models, name="m", now=now)

    first = shards("a.parquet", 40, 1)
    small = check({first: 40}, T0)
    assert (small.verdict, small.retrain) == (WAITING, False) and small.report is None
    assert "40 row(s) in 1 new shard(s) < min_rows 100" in small.why
    normal = check({shards("b.parquet", 40, 2): 40, shards("c.parquet", 40, 3): 40}, T0 + 60)
    assert (normal.verdict, normal.retrain, normal.rows) == (CALM, False, 120)
    again = check({first: 40}, T0 + 90)  # re-embedded with a new model: not new data, never tested again
    assert (again.verdict, again.rows, again.shards) == (WAITING, 0, ())
    assert read_state(models, "m").pending == []
    moved = check({shards("s1.parquet", 120, 4, shifted=True): 120}, T0 + 120)
    assert (moved.verdict, moved.retrain) == (DRIFT_RETRAIN, True), moved.why
    assert moved.shards == (str(tmp_path / "data" / "s1.parquet"),)
    second = check({shards("s2.parquet", 120, 5, shifted=True): 120}, T0 + 180)
    assert (second.verdict, second.retrain) == (DRIFT_NO_RETRAIN, False)
    assert read_state(models, "m").episode.id == moved.episode == second.episode


@pytest.mark.slow
def test_without_a_registry_each_run_is_tested_alone(model_dir, shards):
    model_id = json.loads((model_dir / "seqae.json").read_text())["model_id"]
    policy = DriftPolicy(min_rows=100)
    assert check_drift(model_dir, model_id, {shards("a.parquet", 50, 1): 50}, policy).verdict == WAITING
    moved = check_drift(model_dir, model_id, {shards("s.parquet", 120, 4, shifted=True): 120}, policy)
    assert moved.retrain and moved.report["recon_error"]["wasserstein_relative"] > 1
