"""Object-store credentials from a Prefect block, for workers whose environment does not carry them.

    prefect block create secret   # or: Secret(value={"AWS_ACCESS_KEY_ID": ..., ...}).save("seqae-s3")
    export SEQAE_STORAGE_SECRET_BLOCK=seqae-s3     # the block's name, not a secret: safe to forward

The block is Prefect's ``Secret`` holding a JSON object of environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``, ...).
They are put in this process's environment, where pyarrow's filesystems read them; their values
are never logged, returned or passed as parameters. Without the variable nothing happens and the
environment's own credentials (an instance role, a Kubernetes secret) are used.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Annotated, Any

from pydantic import Field

from seqae.storage import CREDENTIALS_PATTERN

SECRET_BLOCK_ENV = "SEQAE_STORAGE_SECRET_BLOCK"
#: Only these may be set from the block: it must not reach PATH, PREFECT_API_URL and the like.
ALLOWED = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                     "AWS_DEFAULT_REGION", "AWS_REGION", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_ACCOUNT_KEY",
                     "AZURE_STORAGE_ACCOUNT_NAME"})

_loaded: set[str] = set()
_lock = threading.Lock()
log = logging.getLogger(__name__)


def apply_storage_credentials() -> list[str]:
    """Load the block named by ``SEQAE_STORAGE_SECRET_BLOCK`` once per process into the environment;
    returns the variable names it set (never their values)."""
    name = os.environ.get(SECRET_BLOCK_ENV)
    if not name:
        return []
    with _lock:
        if name in _loaded:
            return []
        from prefect.blocks.system import Secret

        block: Any = Secret.load(name)  # a block here (sync context); typed as maybe a coroutine
        value = block.get()
        if not isinstance(value, dict):
            raise ValueError(f"{SECRET_BLOCK_ENV}={name}: expected a Secret block holding a JSON object of "
                             f"environment variables, found a {type(value).__name__}")
        refused = sorted(set(value) - ALLOWED)
        if refused:
            raise ValueError(f"{SECRET_BLOCK_ENV}={name}: refusing to set {', '.join(refused)}; "
                             f"expected only {', '.join(sorted(ALLOWED))}")
        os.environ.update({key: str(v) for key, v in value.items()})
        _loaded.add(name)
        log.info("object-store credentials from block %r: %s", name, ", ".join(sorted(value)))
        return sorted(value)


#: The flow parameters that name a path or URI. A Prefect API that enforces parameter schemas (the
#: default for deployments) refuses a run whose value carries credentials *before* the run and its
#: parameters are stored; see ``forbid_credentials``.
LOCATION_PARAMETERS = ("data", "out", "models_root", "model_dir", "only")
#: What a location parameter's JSON Schema refuses (``seqae.storage.CREDENTIALS_PATTERN``).
NO_CREDENTIALS: dict[str, Any] = {"not": {"type": "string", "pattern": CREDENTIALS_PATTERN}}
#: A path or URI parameter in a flow's signature: the schema constraint only, no pydantic validator
#: (a validator's error would quote the value, secret included, in the run's state message).
LocationParameter = Annotated[str, Field(json_schema_extra=NO_CREDENTIALS)]


def forbid_credentials(properties: dict[str, dict[str, Any]]) -> None:
    """Put ``NO_CREDENTIALS`` on each location parameter among a parameter schema's ``properties``
    (changed in place), for flows whose signature does not say ``LocationParameter`` yet."""
    for name in LOCATION_PARAMETERS:
        if name in properties:
            properties[name].update(NO_CREDENTIALS)
