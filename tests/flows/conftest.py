import dataclasses
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest


def postgres_bin() -> str | None:
    """The folder of PostgreSQL's binaries: Debian's /usr/lib/postgresql/<newest version>/bin, else
    the folder of ``postgres`` on PATH (with initdb beside it)."""
    def version(path: str) -> int:
        part = path.split("/")[-3]
        return int(part) if part.isdigit() else 0

    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=version)
    if versions:
        return os.path.dirname(versions[-1])
    found = shutil.which("postgres")
    if found and os.path.exists(os.path.join(os.path.dirname(found), "initdb")):
        return os.path.dirname(found)
    return None


@dataclasses.dataclass(frozen=True)
class Postgres:
    url: str  # for PREFECT_API_DATABASE_CONNECTION_URL
    psql: list[str]

    def query(self, sql: str) -> str:
        return subprocess.run([*self.psql, "-tAc", sql], check=True, capture_output=True, text=True,
                              timeout=60).stdout.strip()


@pytest.fixture()
def postgres():
    """A real PostgreSQL on 127.0.0.1 and a free port, in a fresh data folder, for one test; yields
    its SQLAlchemy URL (what Prefect's server takes) and a way to query it. As root it runs as the ``postgres`` system user
    (PostgreSQL refuses to run as root). Skips only where the binaries are absent and ``CI`` is
    not set; in CI (which installs them: .ci/run) their absence fails the test."""
    bindir = postgres_bin()
    if bindir is None:
        message = ("PostgreSQL's server binaries (initdb, postgres) are not installed; "
                   "apt-get install postgresql (.ci/run does so)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="seqae-pg-")  # not under pytest's 0700 tmp: the postgres user must reach it
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    data = os.path.join(folder, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "seqae", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, text=True, timeout=120)
    log = open(os.path.join(folder, "postgres.log"), "w")
    # fsync off: a test database, thrown away after the test.
    server = subprocess.Popen([*as_user, f"{bindir}/postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port),
                               "-k", folder, "-c", "fsync=off", "-c", "synchronous_commit=off",
                               "-c", "full_page_writes=off", "-c", "max_connections=200"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while subprocess.run([f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if server.poll() is not None or time.time() > deadline:
                raise AssertionError(f"PostgreSQL did not start:\n{open(log.name).read()[-3000:]}")
            time.sleep(0.2)
        subprocess.run([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "seqae", "prefect"],
                       check=True, capture_output=True, timeout=60)
        yield Postgres(f"postgresql+asyncpg://seqae@127.0.0.1:{port}/prefect",
                       [f"{bindir}/psql", "-h", "127.0.0.1", "-p", str(port), "-U", "seqae", "-d", "prefect"])
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)  # fast shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
