"""Files whose bytes are bad are a contract breach (quarantined, never retried); a connection that drops
is not (retried). The corrupt files are made for real: a valid Parquet file, then bytes damaged."""

import pickle
import socket
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqae.data import DataConfig, ShardReader, resolve_shards
from seqae.data.reader import unreadable
from seqae.errors import ContractError, CorruptFileError, is_transient

ROWS, ROW_GROUP = 200, 50


def valid_file(path, compression="snappy", **options):
    """A valid shard readable in both layouts: 4 row groups of 50 rows, one series per 10 rows."""
    rng = np.random.default_rng(0)
    table = pa.table({
        "id": pa.array(np.arange(ROWS) // 10, pa.int64()),
        "ts": pa.array(np.arange(ROWS) % 10, pa.int64()),
        "x": pa.array(np.round(rng.normal(size=ROWS), 1).astype(np.float32)),  # compressible
        "values": pa.array([rng.normal(size=5).astype(np.float32).tolist() for _ in range(ROWS)],
                           pa.list_(pa.float32())),
    })
    pq.write_table(table, path, row_group_size=ROW_GROUP, compression=compression, **options)
    return bytearray(path.read_bytes())


def _varint(value: int) -> bytes:
    """Thrift compact protocol: zigzag, then 7 bits a byte."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _chunk(path, row_group=2, column=2):
    meta = pq.ParquetFile(path).metadata.row_group(row_group).column(column)
    return meta.data_page_offset, meta.total_compressed_size


def _flip(data: bytearray, start: int, count: int = 24) -> bytearray:
    for i in range(start, start + count):
        data[i] ^= 0x5A
    return data


def truncated_half(path):
    return valid_file(path)[: path.stat().st_size // 2]


def truncated_tail(path):
    return valid_file(path)[:-3]


def bad_magic(path):
    data = valid_file(path)
    data[-4:] = b"PAR2"
    return data


def footer_length_too_large(path):
    data = valid_file(path)
    data[-8:-4] = struct.pack("<i", 10 ** 8)
    return data


def footer_garbled(path):
    data = valid_file(path)
    (footer_length,) = struct.unpack("<i", data[-8:-4])
    return _flip(data, len(data) - 8 - footer_length, 8)


def column_metadata(path):
    """The footer says a later row group's column chunk starts 7 bytes after where it does."""
    data = valid_file(path, use_dictionary=False)
    offset, _ = _chunk(path)
    old, new = _varint(offset), _varint(offset + 7)
    assert len(old) == len(new)
    (footer_length,) = struct.unpack("<i", data[-8:-4])
    footer_start = len(data) - 8 - footer_length
    at = bytes(data).rfind(old, footer_start)
    assert at > 0
    data[at: at + len(old)] = new
    return data


def page_damage(compression, says, **options):
    """Bytes flipped inside a page of row group 2 until pyarrow's decoder says ``says``: which byte
    breaks a compressed stream (rather than changing a literal value) depends on the codec's output."""
    def damage(path):
        good = valid_file(path, compression=compression, use_dictionary=False, **options)
        offset, size = _chunk(path)
        probe = path.with_suffix(".probe")
        for start in range(offset, offset + size - 8):
            probe.write_bytes(_flip(bytearray(good), start, 8))
            try:
                for _ in pq.ParquetFile(probe, page_checksum_verification=True).iter_batches(batch_size=ROWS):
                    pass
            except (OSError, pa.ArrowException) as exc:
                if says in str(exc):
                    return probe.read_bytes()
        raise AssertionError(f"no flipped byte made pyarrow say {says!r}")
    damage.__name__ = f"page_{compression}{'_crc' if options else ''}"
    return damage


AT_OPEN = [truncated_half, truncated_tail, bad_magic, footer_length_too_large, footer_garbled]
MID_FILE = [column_metadata, page_damage("snappy", "Corrupt snappy"), page_damage("gzip", "GZipCodec failed"),
            page_damage("lz4", "Corrupt Lz4"), page_damage("zstd", "ZSTD decompression failed"),
            page_damage("brotli", "Corrupt brotli"), page_damage("none", "CRC checksum", write_page_checksum=True)]
CONFIGS = {"sequence": DataConfig(),
           "long": DataConfig(layout="long", key_column="id", time_column="ts", feature_columns=("x",), window=4)}


def read_all(path, config):
    (shard,) = resolve_shards(str(path))
    for _ in ShardReader(shard, config, batch_size=16):
        pass


def assert_corrupt(err, path):
    message = str(err.value)
    assert isinstance(err.value, ContractError)
    assert "\n" not in message
    assert message.startswith(f"{path}: cannot be read as Parquet (")
    said = " ".join(str(err.value.__cause__).split()).rstrip(".")
    assert message.endswith(f"; expected a valid Parquet file, found {type(err.value.__cause__).__name__}: {said}. "
                            "The file is damaged, truncated or not Parquet: write or copy it again from its source")
    assert not is_transient(err.value) and not is_transient(err.value.__cause__)
    assert err.value.path == str(path)


@pytest.mark.parametrize("damage", AT_OPEN, ids=lambda f: f.__name__)
def test_a_file_damaged_at_its_footer_is_refused_on_opening(tmp_path, damage):
    path = tmp_path / "bad.parquet"
    path.write_bytes(damage(path))
    with pytest.raises(CorruptFileError) as err:
        read_all(path, DataConfig())
    assert_corrupt(err, path)
    assert "cannot be read as Parquet (opening the footer)" in str(err.value)


@pytest.mark.parametrize("layout", CONFIGS)
@pytest.mark.parametrize("damage", MID_FILE, ids=lambda f: f.__name__)
def test_a_page_that_does_not_decode_is_refused_mid_file_naming_the_row(tmp_path, damage, layout):
    path = tmp_path / "bad.parquet"
    path.write_bytes(damage(path))
    with pytest.raises(CorruptFileError) as err:
        read_all(path, CONFIGS[layout])
    assert_corrupt(err, path)
    # Row groups 0 and 1 decode: the error names where reading stopped.
    assert "cannot be read as Parquet (reading rows from row " in str(err.value)
    row = int(str(err.value).split("reading rows from row ")[1].split(")")[0])
    assert 2 * ROW_GROUP - 16 <= row <= 2 * ROW_GROUP


def test_the_exact_message_for_a_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(CorruptFileError) as err:
        read_all(path, DataConfig())
    assert str(err.value) == (
        f"{path}: cannot be read as Parquet (opening the footer); expected a valid Parquet file, found "
        "ArrowInvalid: Parquet magic bytes not found in footer. Either the file is corrupted or this is not a "
        "parquet file. The file is damaged, truncated or not Parquet: write or copy it again from its source"
    )


TRANSIENT = [
    ConnectionResetError("connection reset by peer"), TimeoutError(), socket.timeout("timed out"),
    BrokenPipeError(), socket.gaierror(-3, "Temporary failure in name resolution"),
    OSError("connection reset"),
    OSError("When reading information for key 'a.parquet' in bucket 'b': AWS Error NETWORK_CONNECTION during "
            "HeadObject operation: curlCode: 7, Couldn't connect to server"),
    OSError("AWS Error UNKNOWN (HTTP status 503) during GetObject operation: Please reduce your request rate. "
            "(SlowDown)"),
    OSError("Could not connect to server"), OSError("Operation timed out after 30000 milliseconds"),
    OSError("google::cloud::Status(UNAVAILABLE: Retry policy exhausted)"),
]
PERMANENT = [
    OSError("Corrupt snappy compressed data."), OSError("Couldn't deserialize thrift: No more data to read.\n"),
    OSError("GZipCodec failed: (unknown error)"), OSError("Invalid column metadata (corrupt file?)"),
    OSError("could not verify page integrity, CRC checksum verification failed for page_ordinal 0"),
    pa.ArrowInvalid("Parquet magic bytes not found in footer."), pa.ArrowIOError("Unexpected end of stream"),
    FileNotFoundError(2, "No such file"), PermissionError(13, "denied"), ValueError("bad"),
    ContractError("x.parquet", "wrong type"), CorruptFileError("x.parquet", OSError("boom")),
    OSError("AWS Error ACCESS_DENIED during GetObject operation: Access Denied"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=repr)
def test_connection_errors_and_timeouts_are_transient(tmp_path, exc):
    assert is_transient(exc)
    pq.write_table(pa.table({"id": [1], "values": [[1.0]]}), tmp_path / "x.parquet")
    (shard,) = resolve_shards(str(tmp_path))
    assert unreadable(shard, exc) is exc  # reaches the orchestrator as itself: it retries


@pytest.mark.parametrize("exc", PERMANENT, ids=repr)
def test_bad_bytes_and_contract_breaches_are_not_transient(tmp_path, exc):
    assert not is_transient(exc)
    pq.write_table(pa.table({"id": [1], "values": [[1.0]]}), tmp_path / "x.parquet")
    (shard,) = resolve_shards(str(tmp_path))
    assert isinstance(unreadable(shard, exc), ContractError)


def test_a_connection_dropped_mid_file_is_retried_not_quarantined(tmp_path, monkeypatch):
    path = tmp_path / "x.parquet"
    valid_file(path)
    dropped = OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 56, "
                      "Failure when receiving data from the peer")
    real = pq.ParquetFile.iter_batches

    def drop_after_one(self, *args, **kwargs):
        batches = real(self, *args, **kwargs)
        yield next(batches)
        raise dropped

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", drop_after_one)
    with pytest.raises(OSError) as err:
        read_all(path, DataConfig())
    assert err.value is dropped and is_transient(err.value)


def test_contract_errors_survive_pickling():
    """Worker processes (Ray, Prefect's task runners) send errors back pickled."""
    errors = [ContractError("a.parquet", "wrong type", column="values", expected="list<float32>", found="string",
                            hint="Cast it"),
              CorruptFileError("b.parquet", OSError("Corrupt snappy compressed data."),
                               where="reading rows from row 100")]
    for err in errors:
        again = pickle.loads(pickle.dumps(err))
        assert type(again) is type(err) and str(again) == str(err) and again.path == err.path
        assert again.column == err.column
