"""When drift should retrain: a policy over ``seqae.anomaly.drift``'s reports and the state it keeps
between embed runs. No Prefect: the flows read the decision and emit the events.

A Kolmogorov-Smirnov test on a few hundred rows rejects on differences too small to matter (a shard
with 3% anomalies against a reference of normal rows), and an embed run after every small shard
would then retrain after every shard. So a test counts only when:

- it has enough rows: new shards wait in ``pending`` until together they hold ``min_rows``;
- it rejects at ``alpha`` (on the reconstruction errors, or on the embedding, Bonferroni), and
- the effect is large: the KS statistic of the reconstruction errors (the largest gap between the
  two distributions, 0 to 1) is at least ``min_effect`` (a few anomalies move it by their share).

Drift that counts opens an *episode* and requests one retrain, unless one was requested less than
``cooldown_seconds`` ago. More drift in the same episode requests nothing more. The episode closes
after ``calm_checks`` counted tests in a row without such drift (hysteresis), and the retrain it
requested is recorded when it promotes (``record_retrain``); a retrain that waited for its turn asks
``retrain_needed`` first. Shards are tested once: re-embedding them with a new model is not new data.

The state is ``<models>/<name>/drift.json`` beside the registry's ``current.json``, at the same
root as the registry: a local folder or a URI (``s3://bucket/models``; credentials in it are refused).
Every change is a read-modify-write of that one object:

- on a local disk, under ``<models>/<name>/.drift.lock`` (``flock``), written atomically (rename);
- on S3, by a conditional write: replaced with ``If-Match: <the ETag it read>`` (created with
  ``If-None-Match: *``), through ``seqae.lease.ObjectStore``. A write that finds the object changed
  since it was read (another embed run's check, a retrain recording its promotion) lost a race:
  ``update_state`` reads it again and redoes the change, at most ``max_tries`` times, then raises
  ``DriftStateConflictError`` naming the file. The drift test itself is run once per batch of
  shards, whatever the retries (a retry re-decides on the fresh state with the same report).

Other stores (``gs://``, ...) have no conditional put in ``pyarrow.fs``: keeping the state there is
refused (turn the drift check off, or keep the models root on S3 or a local disk). Without a models
root (an embed run given a model directory) nothing is remembered: each run is tested on its own rows.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from seqae import names
from seqae.config import Device, DriftPolicy  # DriftPolicy is defined with the other configs
from seqae.errors import SeqaeError
from seqae.lease import ObjectStore
from seqae.modelstore import location_of
from seqae.storage import Location, read_json, write_json

STATE_FILE = "drift.json"
LOCK_FILE = ".drift.lock"
STATE_FORMAT = 1
#: Attempts of one change of the state on an object store before it gives up (each lost race is one).
MAX_TRIES = 16
#: Shard keys remembered as tested (the oldest are forgotten first).
SEEN_LIMIT = 100_000
#: Shards tested together at most (the oldest pending ones first).
TEST_SHARDS = 1000
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

#: Verdicts of one check.
WAITING, CALM, DRIFT_RETRAIN, DRIFT_NO_RETRAIN = "too few rows", "no drift", "drift: retrain", "drift: no retrain"

log = logging.getLogger(__name__)
T = TypeVar("T")


class DriftStateConflictError(SeqaeError):
    """Another writer changed the drift state between this one's read and its conditional write."""


@dataclass
class Episode:
    """Drift that counted, until ``calm_checks`` calm tests in a row close it."""

    id: str
    opened_at: str
    model_id: str  # the model the drift was found against
    retrain_requested_at: str | None = None
    handled_by: str | None = None  # the model a retrain of this episode promoted
    calm: int = 0


@dataclass
class DriftState:
    """What the policy remembers between embed runs of one model name."""

    pending: list[dict[str, Any]] = field(default_factory=list)  # {"shard", "key", "rows"}
    seen: list[str] = field(default_factory=list)
    last_retrain_requested_at: str | None = None
    episode: Episode | None = None
    last_check: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> DriftState:
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise SeqaeError(f"{source}: expected a drift state of format {STATE_FORMAT}, found "
                             f"{str(data)[:60]!r}; delete the file to start afresh (pending shards are re-tested)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"format"})
        if unknown:
            raise SeqaeError(f"{source}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        episode = data.get("episode")
        return cls(pending=list(data.get("pending") or []), seen=list(data.get("seen") or []),
                   last_retrain_requested_at=data.get("last_retrain_requested_at"),
                   episode=Episode(**episode) if episode else None, last_check=data.get("last_check"))


@dataclass(frozen=True)
class DriftDecision:
    """One drift check: the verdict, whether it requests a retrain, and why (or why not)."""

    verdict: str
    retrain: bool
    reasons: tuple[str, ...]
    model_id: str
    rows: int
    shards: tuple[str, ...] = ()
    episode: str | None = None
    report: dict[str, Any] | None = None
    checked_at: str = ""

    @property
    def drifted(self) -> bool:
        return self.verdict in (DRIFT_RETRAIN, DRIFT_NO_RETRAIN)

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["shards"] = list(self.shards[:20])
        data["shard_count"] = len(self.shards)
        data["reasons"] = list(self.reasons)
        data["drifted"] = self.drifted
        return data


def _stamp(now: float) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(now))


def _seconds(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, TIME_FORMAT)))


def decide(report: dict[str, Any], state: DriftState, policy: DriftPolicy, model_id: str,
           now: float | None = None) -> DriftDecision:
    """The policy on one test's ``report`` (``seqae.anomaly.drift``'s): updates ``state`` in place
    (episode, cooldown) and says whether to retrain and why."""
    now = time.time() if now is None else now
    stamp = _stamp(now)
    recon, embedding = report["recon_error"], report["embedding"]
    effect = float(recon["statistic"])
    rejected = [f"{name} p={part['p_value']:.3g} < alpha {policy.alpha:g}"
                for name, part in (("recon_error", recon), ("embedding", embedding))
                if part["p_value"] < policy.alpha]
    large = effect >= policy.min_effect
    counts = bool(rejected) and large
    reasons = [f"{report['rows']} rows tested against {report['reference_rows']} reference rows"]
    if not rejected:
        reasons.append(f"no test rejects at alpha {policy.alpha:g} (recon_error p={recon['p_value']:.3g}, "
                       f"embedding p={embedding['p_value']:.3g})")
    elif not large:
        reasons.append(f"{', '.join(rejected)}, but the effect is small: recon_error KS statistic {effect:.3f} < "
                       f"min_effect {policy.min_effect:g}")
    else:
        reasons.append(f"{', '.join(rejected)}, recon_error KS statistic {effect:.3f} >= min_effect "
                       f"{policy.min_effect:g}")
    episode = state.episode
    if not counts:
        if episode is not None:
            episode.calm += 1
            if episode.calm >= policy.calm_checks:
                reasons.append(f"episode {episode.id} closed after {episode.calm} calm test(s)")
                state.episode = None
            else:
                reasons.append(f"episode {episode.id} stays open ({episode.calm} of {policy.calm_checks} calm tests)")
        return DriftDecision(CALM, False, tuple(reasons), model_id, int(report["rows"]),
                             episode=episode.id if episode else None, report=report, checked_at=stamp)
    if episode is not None:
        episode.calm = 0
        when = episode.retrain_requested_at
        reasons.append(f"drift continues in episode {episode.id} (opened {episode.opened_at}"
                       + (f", retrain requested {when})" if when else ", no retrain: it opened in a cooldown)")
                       + ": at most one retrain per episode")
        return DriftDecision(DRIFT_NO_RETRAIN, False, tuple(reasons), model_id, int(report["rows"]),
                             episode=episode.id, report=report, checked_at=stamp)
    last = state.last_retrain_requested_at
    if last is not None and now - _seconds(last) < policy.cooldown_seconds:
        until = _stamp(_seconds(last) + policy.cooldown_seconds)
        reasons.append(f"a retrain was requested at {last}; cooldown until {until}")
        return DriftDecision(DRIFT_NO_RETRAIN, False, tuple(reasons), model_id, int(report["rows"]), report=report,
                             checked_at=stamp)
    state.episode = Episode(uuid.uuid4().hex[:12], stamp, model_id, retrain_requested_at=stamp)
    state.last_retrain_requested_at = stamp
    reasons.append(f"episode {state.episode.id} opened: retrain requested")
    return DriftDecision(DRIFT_RETRAIN, True, tuple(reasons), model_id, int(report["rows"]),
                         episode=state.episode.id, report=report, checked_at=stamp)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or "/" in name or name.startswith((".", "_")):
        raise SeqaeError(f"model name: expected a plain name such as 'ecg', got {name!r}")


def state_location(models_root: str | os.PathLike | Location, name: str) -> Location:
    """Where the state of ``name`` lies: ``<models>/<name>/drift.json`` (credentials in a URI refused)."""
    _check_name(name)
    return location_of(models_root).join(name, STATE_FILE)


def state_folder(models_root: str | os.PathLike, name: str) -> Path:
    """``<models>/<name>`` on a local disk, the folder of the registry's ``current.json`` (created when
    missing)."""
    _check_name(name)
    folder = Path(models_root) / name
    if folder.is_symlink():
        raise SeqaeError(f"{folder}: expected a folder of the registry, found a symbolic link (never followed)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _parse(data: bytes, location: Location) -> DriftState:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SeqaeError(f"{location}: not a valid drift state ({exc}); delete the file to start afresh (pending "
                         "shards are re-tested)") from exc
    return DriftState.from_dict(raw, str(location))


def _object_store(location: Location) -> ObjectStore:
    store = ObjectStore(location)
    if not store.conditional:
        raise SeqaeError(f"{location}: the drift state needs conditional writes (S3) or a local filesystem; found "
                         f"{location.filesystem.type_name}, which has none in pyarrow.fs. Keep the models root on S3 "
                         "or a local disk, or turn the drift check off (drift=None)")
    return store


@contextlib.contextmanager
def drift_state(models_root: str | os.PathLike | Location, name: str) -> Iterator[DriftState]:
    """The state of ``name`` for one read-modify-write, written back when the block ends without an
    error: on a local disk held alone (``flock`` on ``.drift.lock``) and written atomically; on S3
    written by one conditional write (``If-Match`` the ETag read, ``If-None-Match: *`` when absent).

    Raises:
        DriftStateConflictError: S3 only: another writer changed the state since it was read; nothing
            was written (``update_state`` retries).
    """
    location = state_location(models_root, name)
    if location.is_local:
        import fcntl

        folder = state_folder(Path(location.path).parents[1], name)  # <models>, as an absolute path
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = folder / STATE_FILE
            state = DriftState.from_dict(read_json(path, "drift state"), str(path)) if path.is_file() else DriftState()
            yield state
            write_json(path, state.to_dict())
        finally:
            os.close(fd)  # releases the lock
        return
    store = _object_store(location)
    stored = store.get(location)
    state = _parse(stored.data, location) if stored is not None else DriftState()
    yield state
    data = json.dumps(state.to_dict(), indent=2, default=str).encode()
    if stored is None:
        written = store.put(location, data, if_absent=True)
        expected = "absent (If-None-Match: *)"
    else:
        written = store.put(location, data, if_etag=stored.etag)
        expected = f"unchanged since read (If-Match: {stored.etag})"
    if written is None:
        raise DriftStateConflictError(f"{location}: expected the drift state {expected}, found it written by "
                                      "another run meanwhile; nothing was written")


def update_state(models_root: str | os.PathLike | Location, name: str, change: Callable[[DriftState], T], *,
                 max_tries: int = MAX_TRIES) -> T:
    """Apply ``change`` to the state of ``name`` and write it back; returns what ``change`` returned.

    On S3 a lost race (``DriftStateConflictError``) reads the state again and calls ``change`` on the
    fresh copy, at most ``max_tries`` times in all, with a short random pause between tries. On a
    local disk the ``flock`` serialises writers: one try.

    Raises:
        DriftStateConflictError: other writers won every one of the ``max_tries`` tries.
    """
    if not isinstance(max_tries, int) or max_tries < 1:
        raise SeqaeError(f"max_tries: expected a positive integer, got {max_tries!r}")
    for attempt in range(1, max_tries + 1):
        try:
            with drift_state(models_root, name) as state:
                result = change(state)
            return result
        except DriftStateConflictError as exc:
            if attempt == max_tries:
                location = state_location(models_root, name)
                raise DriftStateConflictError(
                    f"{location}: {max_tries} concurrent update(s) of the drift state of {name!r} won every try of "
                    f"this one (the last: {exc}); expected to write it within {max_tries} tries. Nothing of this "
                    "change was recorded: rerun it") from None
            log.info("%s: the drift state changed under this update (try %d of %d); reading it again",
                     state_location(models_root, name), attempt, max_tries)
            time.sleep(random.uniform(0, 0.05 * min(attempt, 8)))
    raise AssertionError("unreachable")


def read_state(models_root: str | os.PathLike | Location, name: str) -> DriftState:
    """The state of ``name`` as last written (an empty one before the first check)."""
    location = state_location(models_root, name)
    if location.is_local:
        path = Path(location.path)
        return DriftState.from_dict(read_json(path, "drift state"), str(path)) if path.is_file() else DriftState()
    stored = ObjectStore(location).get(location)
    return _parse(stored.data, location) if stored is not None else DriftState()


def _shard_key(uri: str) -> str:
    from seqae.data import resolve_shards

    found = resolve_shards(uri)
    return found[0].fingerprint if len(found) == 1 else uri


def _test(model_dir: str, shards: list[str], rows: int, state: DriftState | None, policy: DriftPolicy,
          model_id: str, now: float | None, device: Device,
          reports: dict[tuple[str, ...], dict[str, Any]] | None = None) -> DriftDecision:
    """Test ``shards`` (once: ``reports`` keeps the report of each batch for a retry) and decide."""
    from seqae.anomaly import drift

    if rows < policy.min_rows:
        return DriftDecision(WAITING, False, (f"{rows} row(s) in {len(shards)} new shard(s) < min_rows "
                                              f"{policy.min_rows}: they wait for more before a test counts",),
                             model_id, rows, tuple(shards), episode=state.episode.id if state and state.episode
                             else None, checked_at=_stamp(time.time() if now is None else now))
    reports = {} if reports is None else reports
    if tuple(shards) not in reports:
        reports[tuple(shards)] = drift(model_dir, shards, alpha=policy.alpha, device=device)
    decision = decide(reports[tuple(shards)], state if state is not None else DriftState(), policy, model_id, now)
    return dataclasses.replace(decision, shards=tuple(shards))


def check_drift(model_dir: str | os.PathLike, model_id: str, new_shards: dict[str, int], policy: DriftPolicy, *,
                models_root: str | os.PathLike | None = None, name: str = names.DEFAULT_MODEL_NAME, now: float | None = None,
                device: Device = "cpu", max_tries: int = MAX_TRIES) -> DriftDecision:
    """Add the shards an embed run wrote (``{shard: rows written}``) to what waits for a test, test
    the pending shards against the reference of ``model_dir`` once they hold ``min_rows`` rows, and
    decide. Shards already tested are left out (a re-embed with a new model is not new data).

    Without ``models_root`` nothing is remembered: the given shards are tested alone (when they hold
    ``min_rows``), with no episode nor cooldown. With one (a local folder or a URI), the state is
    changed by ``update_state``: on S3 a lost race redoes the decision on the fresh state, reusing
    the test's report when the batch is the same.

    Raises:
        DriftStateConflictError: other writers of the state won ``max_tries`` tries in a row.
    """
    model_dir = str(model_dir)
    if models_root is None:
        return _test(model_dir, list(new_shards), sum(new_shards.values()), None, policy, model_id, now, device)
    keys = {shard: _shard_key(shard) for shard in new_shards}  # read once, not once per try
    reports: dict[tuple[str, ...], dict[str, Any]] = {}

    def add_and_test(state: DriftState) -> DriftDecision:
        seen, waiting = set(state.seen), {p["key"] for p in state.pending}
        for shard, rows in new_shards.items():
            key = keys[shard]
            if key not in seen and key not in waiting:
                state.pending.append({"shard": shard, "key": key, "rows": int(rows)})
                waiting.add(key)
        batch = state.pending[:TEST_SHARDS]
        decision = _test(model_dir, [p["shard"] for p in batch], sum(p["rows"] for p in batch), state, policy,
                         model_id, now, device, reports)
        if decision.verdict != WAITING:
            state.pending = state.pending[len(batch):]
            state.seen = (state.seen + [p["key"] for p in batch])[-SEEN_LIMIT:]
        state.last_check = {k: v for k, v in decision.to_dict().items() if k != "report"}
        return decision

    decision = update_state(models_root, name, add_and_test, max_tries=max_tries)
    log.info("drift check of %s: %s (%s)", name, decision.verdict, decision.why)
    return decision


def retrain_needed(models_root: str | os.PathLike | Location, name: str, episode: str | None, drift_model_id: str | None,
                   current_model_id: str | None) -> tuple[bool, str]:
    """Whether a retrain triggered by drift episode ``episode`` (found against ``drift_model_id``)
    is still needed when it starts, after waiting for its turn; a retrain without an episode (on a
    schedule, by hand) always is. Returns the answer and why."""
    if episode is None:
        return True, "not triggered by drift (a schedule or by hand)"
    if drift_model_id and current_model_id and current_model_id != drift_model_id:
        return False, (f"model {current_model_id} was promoted after the drift against {drift_model_id} was found; "
                       "its own drift checks decide")
    open_episode = read_state(models_root, name).episode
    if open_episode is None or open_episode.id != episode:
        return False, f"drift episode {episode} is over (the data was calm again, or a newer episode replaced it)"
    if open_episode.handled_by is not None:
        return False, f"drift episode {episode} was already handled: its retrain promoted {open_episode.handled_by}"
    return True, f"drift episode {episode} (found against {drift_model_id or 'the current model'}) is not handled yet"


def record_retrain(models_root: str | os.PathLike | Location, name: str, episode: str | None, model_id: str) -> None:
    """Record that a retrain of ``episode`` promoted ``model_id`` (a later retrain of it is not needed)."""
    if episode is None:
        return

    def handled(state: DriftState) -> None:
        if state.episode is not None and state.episode.id == episode:
            state.episode.handled_by = model_id

    update_state(models_root, name, handled)
