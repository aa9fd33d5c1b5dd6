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

        value = Secret.load(name).get()
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
