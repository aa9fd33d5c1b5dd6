"""One run at a time per output folder (embed) and per model name (retrain), across every worker.

Prefect global concurrency limits of one slot, named after what they guard: ``seqae-embed-<key>``
(``key``: the first 16 hex digits of the sha256 of the output folder's URI) and
``seqae-retrain-<model name>``. The flow holds the slot for its whole run; the server leases it
(renewed while held), so a slot whose holder was killed frees itself within ``LEASE_SECONDS``.
A limit is created on first use (Prefect acquires nothing on a limit that does not exist).

Why not the library's folder lock (``OutputFolder.lock``): the embed flow's shard tasks take it
shared, on other threads or Ray workers, and would wait behind the flow's own exclusive hold;
the slot is above them and works the same for local folders and object stores.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from seqae.storage import Location, sha256_text

#: Seconds a held slot survives its holder (renewed every so often while the run is alive).
LEASE_SECONDS = 120.0
#: The shortest wait handed to Prefect: an acquisition cut short while its request is in flight can
#: be granted on the server after the client gave up, leaving a slot that no one renews (held until
#: its lease ends). So a run that will not wait looks at the slot first instead (``one_at_a_time``).
MIN_WAIT_SECONDS = 30.0


class SlotBusy(TimeoutError):
    """Another run held the slot for longer than this run would wait."""


def embed_slot_name(out: str) -> str:
    """The concurrency limit of one output folder (a URI is hashed: limit names refuse ``/``)."""
    return f"seqae-embed-{sha256_text(Location.of(out).uri)[:16]}"


def retrain_slot_name(model_name: str) -> str:
    return "seqae-retrain-" + re.sub(r"[^A-Za-z0-9_.-]", "-", model_name)


def ensure_limit(name: str) -> bool:
    """A global concurrency limit ``name`` of one active slot (created when missing); returns whether
    its slot is taken now."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another run created it first
                pass
            return False
        if existing.limit != 1 or not existing.active:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))
        return existing.active_slots >= 1


@contextlib.contextmanager
def one_at_a_time(name: str, wait_seconds: float | None) -> Iterator[None]:
    """Hold the one slot of ``name`` for a block, waiting up to ``wait_seconds`` (None: as long as
    it takes, bounded by the flow's timeout; 0: not at all when the slot is taken now; a run that
    finds it free and then loses it to another by a hair waits for that one).

    Raises:
        SlotBusy: the slot was taken (``wait_seconds`` 0), or stayed taken for ``wait_seconds``.
    """
    taken = ensure_limit(name)
    if wait_seconds is not None and wait_seconds <= 0 and taken:
        raise SlotBusy(f"{name}: another run holds it")
    timeout = None if wait_seconds is None or wait_seconds <= 0 else max(wait_seconds, MIN_WAIT_SECONDS)
    held = contextlib.ExitStack()
    try:
        held.enter_context(concurrency(name, occupy=1, lease_duration=LEASE_SECONDS, strict=True,
                                       raise_on_lease_renewal_failure=False,
                                       timeout_seconds=timeout))
    except TimeoutError as exc:
        raise SlotBusy(f"{name}: another run held it for {timeout:g} s") from exc
    with held:
        yield
