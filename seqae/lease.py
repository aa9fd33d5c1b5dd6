"""A lease on an output folder in an object store: what ``fcntl.flock`` is on a local disk.

One ``seqae embed`` run at a time writes an output folder. Locally the folder's lock file does that
(``seqae.infer.commit.OutputFolder.lock``); object stores have no lock, so the run holds a *lease*:
an object ``<out>/_seqae/lease`` holding its owner and an expiry time.

On S3 (``s3://``) the lease is taken by a conditional create (``put_object(IfNoneMatch="*")``) and
renewed by compare-and-swap (``put_object(IfMatch=<etag>)``) from a background thread while it is
held, so a second run refuses at once (``FolderBusyError``), and a holder that died stops renewing:
once its lease has expired, the next run takes it over by a conditional replace of the expired
object (two runs racing for it: one wins). A holder that fails to renew (it was taken over after
a stall longer than the lease) is *lost*: ``check()`` raises, and commits check it first. Expiry is
compared with the local clock: clocks of writers must agree to well within ``ttl_s``.

Other object stores (``gs://``, HDFS, ...) reach seqae through ``pyarrow.fs``, which has no
conditional put. There the lease is written plainly and read back: a run that starts while another
holds a live lease refuses, and a dead holder's lease expires as on S3; but two runs that start
within the same moment may both believe they hold it. Run one ``embed`` per output folder there.

boto3 is imported on first use, and only for ``s3://`` folders. No Prefect, no TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from seqae import names
from seqae.errors import SeqaeError
from seqae.storage import Location, utc_now, write_bytes

log = logging.getLogger(__name__)

#: Seconds a lease lives without renewal; renewed every third of it.
LEASE_SECONDS = 60.0
#: Where a folder's lease lies, below the folder.
LEASE_PATH = posixpath.join(names.CONTROL_DIR, names.LEASE_FILE)


class FolderBusyError(SeqaeError):
    """Another run holds the output folder's lock or lease."""


class CommitConflictError(SeqaeError):
    """Another writer committed (or took the folder) while this one wrote: detected, never merged."""


@dataclass(frozen=True)
class LeaseRecord:
    """What the lease object holds."""

    owner: str
    holder: str
    expires_at: float

    def to_bytes(self) -> bytes:
        return json.dumps({"owner": self.owner, "holder": self.holder, "expires_at": self.expires_at,
                           "written_at": utc_now()}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord | None:
        try:
            raw = json.loads(data)
            return cls(str(raw["owner"]), str(raw["holder"]), float(raw["expires_at"]))
        except (ValueError, KeyError, TypeError):  # a torn or foreign object: treated as expired
            return None


@dataclass(frozen=True)
class Stored:
    """An object's bytes and its version tag (S3's ETag; ``None`` where the store has none)."""

    data: bytes
    etag: str | None


class ObjectStore:
    """Whole-object reads and writes, conditional where the store allows it (S3 through boto3)."""

    def __init__(self, location: Location):
        self.conditional = location.filesystem.type_name == "s3"
        self._client = _s3_client(location) if self.conditional else None

    @staticmethod
    def _split(location: Location) -> tuple[str, str]:
        bucket, _, key = location.path.partition("/")
        return bucket, key

    def get(self, location: Location) -> Stored | None:
        if self._client is None:
            return Stored(location.read_bytes(), None) if location.is_file() else None
        bucket, key = self._split(location)
        try:
            answer = self._client.get_object(Bucket=bucket, Key=key)
        except self._client.exceptions.NoSuchKey:
            return None
        return Stored(answer["Body"].read(), answer["ETag"])

    def put(self, location: Location, data: bytes, *, if_absent: bool = False, if_etag: str | None = None) -> str | None:
        """Write ``data``; with ``if_absent`` or ``if_etag`` only if the object is absent or unchanged
        (S3); returns the new ETag, or ``None`` when the condition failed."""
        if self._client is None:
            if if_absent and location.is_file():
                return None
            write_bytes(location, data)
            return ""
        bucket, key = self._split(location)
        condition = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_etag} if if_etag else {}
        try:
            return self._client.put_object(Bucket=bucket, Key=key, Body=data, **condition)["ETag"]
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise

    def delete(self, location: Location) -> None:
        if self._client is None:
            location.delete()
            return
        bucket, key = self._split(location)
        self._client.delete_object(Bucket=bucket, Key=key)


def _s3_client(location: Location):
    """A boto3 client for the endpoint the ``pyarrow.fs.S3FileSystem`` of ``location`` talks to
    (credentials from the environment, as pyarrow's)."""
    try:
        import boto3
    except ImportError as exc:  # declared in the core dependencies; a trimmed install may lack it
        raise SeqaeError(f"{location}: a lease on S3 needs boto3; expected it installed, found none "
                         "(pip install boto3)") from exc
    options = location.filesystem.__reduce__()[1][0]  # pyarrow keeps its options here, and only here
    endpoint = options.get("endpoint_override") or None
    if endpoint and "://" not in endpoint:
        endpoint = f"{options.get('scheme') or 'https'}://{endpoint}"
    return boto3.client("s3", region_name=options.get("region") or None, endpoint_url=endpoint)


def put_if_absent(location: Location, data: bytes) -> bool:
    """Create ``location`` only if no object is there (S3: ``IfNoneMatch``; elsewhere a check, then a
    write). ``False`` when one was."""
    return ObjectStore(location).put(location, data, if_absent=True) is not None


class Lease:
    """The lease on ``folder`` (see the module docstring), the object ``folder/<name>``. Use as a
    context manager, or ``acquire`` / ``release``; ``check()`` raises ``FolderBusyError`` once it is lost."""

    def __init__(self, folder: Location, *, ttl_s: float | None = None, holder: str | None = None,
                 name: str = LEASE_PATH):
        ttl_s = LEASE_SECONDS if ttl_s is None else ttl_s
        if ttl_s <= 0:
            raise SeqaeError(f"ttl_s: expected a positive number of seconds, got {ttl_s}")
        self.folder = folder
        self.location = folder.join(name)
        self.ttl_s = ttl_s
        self.owner = uuid.uuid4().hex
        self.holder = holder or f"seqae embed, pid {os.getpid()} on {socket.gethostname()}, since {utc_now()}"
        self.store = ObjectStore(self.location)
        self._etag: str | None = None
        self._expires_at = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> LeaseRecord:
        return LeaseRecord(self.owner, self.holder, time.time() + self.ttl_s)

    def acquire(self) -> Lease:
        record = self._record()
        etag = self.store.put(self.location, record.to_bytes(), if_absent=True)
        if etag is None:
            etag = self._take_over(record)
        elif not self.store.conditional:
            self._confirm()
        self._etag, self._expires_at = etag, record.expires_at
        self._thread = threading.Thread(target=self._renew_loop, name="seqae-lease", daemon=True)
        self._thread.start()
        log.debug("%s: lease taken (%s)", self.location, self.owner)
        return self

    def _take_over(self, record: LeaseRecord) -> str | None:
        current = self.store.get(self.location)
        held = LeaseRecord.from_bytes(current.data) if current is not None else None
        if held is not None and held.expires_at > time.time():
            raise busy(self.folder, held.holder)
        if current is None:  # released between the two calls
            etag = self.store.put(self.location, record.to_bytes(), if_absent=True)
        else:
            etag = self.store.put(self.location, record.to_bytes(), if_etag=current.etag)
        if etag is None:
            raise busy(self.folder, "another run that took the expired lease first")
        if held is not None:
            log.warning("%s: took over the expired lease of %s", self.folder, held.holder)
        if not self.store.conditional:
            self._confirm()
        return etag

    def _confirm(self) -> None:
        """Without conditional writes: read back, and refuse if another run's write landed last."""
        current = self.store.get(self.location)
        held = LeaseRecord.from_bytes(current.data) if current is not None else None
        if held is None or held.owner != self.owner:
            raise busy(self.folder, held.holder if held else "another run")

    def renew(self) -> bool:
        """Extend the lease by ``ttl_s``; ``False`` (and the lease lost) when it is no longer ours."""
        if self._lost:
            return False
        record = self._record()
        if self.store.conditional:
            etag = self.store.put(self.location, record.to_bytes(), if_etag=self._etag)
        else:
            current = self.store.get(self.location)
            held = LeaseRecord.from_bytes(current.data) if current is not None else None
            etag = self.store.put(self.location, record.to_bytes()) if held and held.owner == self.owner else None
        if etag is None:
            self._lost = "it was taken over by another run"
            log.error("%s: lease lost: %s", self.folder, self._lost)
            return False
        self._etag, self._expires_at = etag, record.expires_at
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # a store that does not answer: retried until the lease runs out
                log.warning("%s: lease renewal failed (%s: %s)", self.folder, type(exc).__name__, exc)

    def check(self) -> None:
        """Raise ``FolderBusyError`` if this run no longer holds the lease (taken over, or expired
        without renewal): its writes must not be committed."""
        if self._lost is None and time.time() >= self._expires_at:
            self._lost = "it expired without renewal"
        if self._lost is not None:
            raise FolderBusyError(f"{self.folder}: this run's lease on the folder was lost ({self._lost}); "
                                  "expected to hold it until the run ends; nothing more is committed, rerun")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._lost:
            return
        current = self.store.get(self.location)
        held = LeaseRecord.from_bytes(current.data) if current is not None else None
        if held is not None and held.owner == self.owner:
            self.store.delete(self.location)

    def wait(self, poll_s: float = 0.2) -> Lease:
        """``acquire``, waiting while another holder's lease is live (it is renewed while held and
        runs out when its holder dies)."""
        while True:
            try:
                return self.acquire()
            except FolderBusyError:
                time.sleep(poll_s)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def busy(folder: Location, holder: str) -> FolderBusyError:
    return FolderBusyError(f"{folder}: another seqae run is writing to this folder ({holder}); "
                           "wait for it to finish or give another --out")


def live_holder(folder: Location, name: str = LEASE_PATH) -> str | None:
    """Who holds a live lease on ``folder`` (the object ``folder/<name>``), or ``None``."""
    location = folder.join(name)
    current = ObjectStore(location).get(location)
    held = LeaseRecord.from_bytes(current.data) if current is not None else None
    return held.holder if held is not None and held.expires_at > time.time() else None
