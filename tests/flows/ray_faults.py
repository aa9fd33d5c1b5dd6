"""Fault injection for the Ray tests, installed in every Ray worker by Ray's ``worker_process_setup_hook``
(``SEQAE_RAY_RUNTIME_ENV``):

- ``install``: the worker that writes the first batch of the shard named by ``SEQAE_TEST_KILL_SHARD``
  SIGKILLs itself, once (the marker file says it happened, and where);
- ``stall_on_node``: on one node of a cluster, the worker that writes a shard's first batch stalls
  there, so that the test can kill the whole node mid-shard (``test_ray_cluster.py``)."""

import os
import signal


def install() -> None:
    target, marker = os.environ.get("SEQAE_TEST_KILL_SHARD"), os.environ.get("SEQAE_TEST_KILL_MARKER")
    if not target or not marker:
        return
    from seqae.infer import stages

    write = stages.ShardOutput.write

    def write_or_die(self, read, scores):
        write(self, read, scores)
        if self.name == target and self.rows_written and not os.path.exists(marker):
            with open(marker, "w") as handle:  # mid-shard: part of its data file written, nothing committed
                handle.write(f"{os.getpid()} {self.rows_written}")
            os.kill(os.getpid(), signal.SIGKILL)

    stages.ShardOutput.write = write_or_die


def stall_on_node() -> None:
    """Installed like ``install``: on the node whose environment says ``SEQAE_TEST_NODE`` equals
    ``SEQAE_TEST_STALL_NODE``, the worker that has written the first batch of a shard writes the marker
    ``SEQAE_TEST_STALL_MARKER`` (``<shard output> <pid> <rows written>``) and stalls there, mid-shard,
    until the test kills the whole node."""
    node, stall, marker = (os.environ.get(name) for name in ("SEQAE_TEST_NODE", "SEQAE_TEST_STALL_NODE",
                                                             "SEQAE_TEST_STALL_MARKER"))
    if not node or node != stall or not marker:
        return
    import time

    from seqae.infer import stages

    write = stages.ShardOutput.write

    def write_and_stall(self, read, scores):
        write(self, read, scores)
        if self.rows_written and not os.path.exists(marker):
            with open(f"{marker}.tmp", "w") as handle:
                handle.write(f"{self.name} {os.getpid()} {self.rows_written}")
            os.replace(f"{marker}.tmp", marker)  # the test reads it whole or not at all
            time.sleep(600)

    stages.ShardOutput.write = write_and_stall
