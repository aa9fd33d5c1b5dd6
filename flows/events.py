"""Emit the events the deployments are triggered by, from a shell, an upload hook or a test.

    python -m flows emit-shard-landed data/part-00007.parquet --data data   # or SEQAE_DATA=data
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

from flows.tasks import SHARD_LANDED_EVENT
from seqae.data import resolve_shards
from seqae.storage import sha256_text


def emit_shard_landed(path: str) -> dict[str, Any]:
    """Say that one Parquet shard arrived; ``embed-on-arrival`` embeds just that shard.

    The path is checked first (it must name one Parquet file), so a typo is an error here and not
    a failed flow run later.
    """
    shard = resolve_shards(path)
    if len(shard) != 1:
        raise ValueError(f"{path}: expected one Parquet file, found {len(shard)}")
    uri = shard[0].uri
    event = emit_event(event=SHARD_LANDED_EVENT,
                       resource={"prefect.resource.id": f"seqae.shard.{sha256_text(uri)[:16]}",
                                 "prefect.resource.name": uri},
                       payload={"path": uri, "size": shard[0].size, "fingerprint": shard[0].fingerprint})
    return {"event": SHARD_LANDED_EVENT, "path": uri, "id": str(event.id) if event else None}
