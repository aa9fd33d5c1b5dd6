"""A Ray cluster of two nodes on this machine, each started by ``ray start`` in its own process group
with its own ``--temp-dir``, small ``--num-cpus`` and no dashboard, as a test fixture builds it.

    cluster = TwoNodeCluster.start(env)      # head (with the Ray Client server), then a second node
    cluster.address                          # ray://127.0.0.1:<port>: what the embed flow is given
    cluster.node_ids                         # {"head": <Ray node id>, "worker": <Ray node id>}
    cluster.kill("worker")                   # SIGKILL every process of that node (raylet included)
    cluster.stop()                           # the same for both nodes: always, even after a failure

Every process is found by its id: the ``ray start`` process of a node, its descendants (GCS, raylet,
agents, the workers the raylet spawns, which run in process groups of their own) and anything whose
command line names the node's temporary folder, a fresh ``mkdtemp`` folder. Nothing else on the
machine is touched (``ray stop`` would stop every Ray process of every user).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
#: Seconds a node may take to start on a loaded 2-core machine.
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process this user can read."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry)] = (ppid, command)
    return found


@dataclasses.dataclass
class Node:
    name: str
    temp_dir: Path
    process: subprocess.Popen
    log: Path

    def pids(self) -> set[int]:
        """This node's processes: ``ray start``, its descendants, and whatever names its folder."""
        table = _processes()
        mine = {self.process.pid} | {pid for pid, (_, command) in table.items() if str(self.temp_dir) in command}
        grew = True
        while grew:
            children = {pid for pid, (ppid, _) in table.items() if ppid in mine} - mine
            grew = bool(children)
            mine |= children
        return {pid for pid in mine if pid in table}

    def node_id(self) -> str:
        """The Ray node id, from its raylet's command line (``--node_id=<hex>``)."""
        for pid in self.pids():
            command = _processes().get(pid, (0, ""))[1]
            if "/raylet " in command or command.startswith("raylet "):
                for word in command.split():
                    if word.startswith("--node_id="):
                        return word.split("=", 1)[1]
        raise AssertionError(f"node {self.name}: no raylet found; its log says:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    def kill(self) -> None:
        for _ in range(3):  # a worker may be spawned while the others die: look again
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if not pids:
                break
            time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


@dataclasses.dataclass
class TwoNodeCluster:
    root: Path
    nodes: dict[str, Node]
    address: str
    node_ids: dict[str, str]

    @classmethod
    def start(cls, env: dict[str, str], num_cpus: int = 1) -> TwoNodeCluster:
        """Start a head (GCS, Ray Client server) and a second node that joins it with ``--address``.

        ``env`` is every node's whole environment (what a pod would get: the code on PYTHONPATH, the
        object store's credentials, Ray's token); each node also gets its own HOME in its folder and
        ``SEQAE_TEST_NODE=<its name>`` (``head``, ``worker``), which the fault hooks read.
        """
        root = Path(tempfile.mkdtemp(prefix="seqae-ray-", dir="/tmp"))  # Ray's socket paths must stay short
        gcs, client = free_port(), free_port()
        nodes: dict[str, Node] = {}
        cluster = cls(root, nodes, f"ray://127.0.0.1:{client}", {})
        try:
            nodes["head"] = cls._start_node(root, "head", env, num_cpus, [
                "--head", "--port", str(gcs), "--ray-client-server-port", str(client), "--include-dashboard", "false"])
            _wait_for_port(gcs, nodes["head"])
            nodes["worker"] = cls._start_node(root, "worker", env, num_cpus, ["--address", f"127.0.0.1:{gcs}"])
            for node in nodes.values():
                _wait_for_line(node, "Ray runtime started")
            _wait_for_port(client, nodes["head"])
            cluster.node_ids.update({name: node.node_id() for name, node in nodes.items()})
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @staticmethod
    def _start_node(root: Path, name: str, env: dict[str, str], num_cpus: int, role: list[str]) -> Node:
        temp_dir = root / name
        (temp_dir / "home").mkdir(parents=True)
        log = root / f"{name}.log"
        command = [str(RAY), "start", "--block", *role, "--temp-dir", str(temp_dir), "--num-cpus", str(num_cpus),
                   "--object-store-memory", str(80 * 1024 * 1024), "--disable-usage-stats",
                   "--dashboard-agent-listen-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                   "--metrics-export-port", str(free_port())]
        with open(log, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**env, "HOME": str(temp_dir / "home"), "SEQAE_TEST_NODE": name},
                                       cwd=temp_dir)
        return Node(name, temp_dir, process, log)

    def kill(self, name: str) -> None:
        self.nodes[name].kill()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def _wait_for_port(port: int, node: Node) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if node.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"node {node.name}: port {port} never opened; its log says:\n{node.tail()}")
        time.sleep(0.2)


def _wait_for_line(node: Node, line: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while line not in (node.log.read_text(errors="replace") if node.log.exists() else ""):
        if node.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"node {node.name}: never said {line!r}; its log says:\n{node.tail()}")
        time.sleep(0.2)
