"""Fault injection for the Ray tests, installed in every Ray worker by Ray's ``worker_process_setup_hook``
(``SEQAE_RAY_RUNTIME_ENV``): the worker that writes the first batch of the shard named by
``SEQAE_TEST_KILL_SHARD`` SIGKILLs itself, once (the marker file says it happened, and where)."""

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
