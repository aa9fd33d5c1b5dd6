"""A model's whole life on an object store, nothing shared but the bucket (issue #26): train to
s3://, export and fit its threshold there, evaluate with the report on s3://, promote from 8 threads
at once (conditional writes), embed with the promoted model's URI. Against moto's S3 server
(``s3`` fixture); the request counts of one shard are measured at that server."""

import collections
import json
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from seqae import names
from seqae.config import EmbedConfig, ModelConfig, TrainConfig
from seqae.errors import ModelDirError, SeqaeError
from seqae.infer.artifacts import ModelArtifacts
from seqae.registry import ModelRegistry, PromotionConflictError, PromotionError
from seqae.storage import Location
from tests.test_registry import fake_model

slow = pytest.mark.slow  # trains the tiny model


def upload(local, uri: str) -> str:
    filesystem, path = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)
    return uri


def keys(prefix: str) -> list[str]:
    location = Location.of(prefix)
    infos = location.filesystem.get_file_info(pafs.FileSelector(location.path, recursive=True, allow_not_found=True))
    return sorted(i.path[len(location.path) + 1:] for i in infos if i.type == pafs.FileType.File)


def promote_concurrently(registry_uri: str, sources: list, threads: int = 8) -> list:
    start = threading.Barrier(threads)

    def promote(i):
        start.wait()
        return ModelRegistry(registry_uri).promote(sources[i % len(sources)], "ecg")

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(promote, range(threads)))


def check_registry(registry_uri: str, promotions: list) -> None:
    """Every promotion in the history once, numbers 1..n, the pointer on the last, each snapshot whole."""
    registry = ModelRegistry(registry_uri)
    history = registry.history("ecg")
    assert sorted(p.location for p in history) == sorted(p.location for p in promotions)
    assert [p.model_version for p in history] == list(range(1, len(promotions) + 1))
    assert registry.current("ecg") == history[-1]
    for promotion in history:
        info = ModelArtifacts.open(promotion.location, (names.SCORER_ONNX, names.ENCODER_ONNX)).info  # sha256 checked
        assert info.model_version == promotion.model_version and info.model_id == promotion.model_id
        assert info.metadata["promotion"]["number"] == promotion.model_version


def test_sixteen_promotions_from_eight_threads_on_s3_are_numbered_once_each(s3, tmp_path):
    models = [fake_model(tmp_path / f"m{i}", f"m{i}") for i in range(4)]
    sources = [str(models[0]), str(models[1]), upload(models[2], f"s3://{s3.bucket}/staging/m2"),
               upload(models[3], f"s3://{s3.bucket}/staging/m3")]
    root = f"s3://{s3.bucket}/models"
    promotions = promote_concurrently(root, sources) + promote_concurrently(root, sources)  # two rounds
    check_registry(root, promotions)
    stored = keys(f"s3://{s3.bucket}/models/ecg")
    assert [k for k in stored if k.startswith("history/")] == sorted(f"history/{n}.json" for n in range(1, 17))
    assert len({k.split("/")[1] for k in stored if k.startswith("versions/")}) == 16  # no orphan snapshot
    current = ModelRegistry(root).current_dir("ecg")
    assert isinstance(current, str) and current.startswith(f"s3://{s3.bucket}/models/ecg/versions/")


def test_a_promotion_that_loses_every_race_says_who_won(s3, tmp_path, monkeypatch):
    model = fake_model(tmp_path / "m")
    root = f"s3://{s3.bucket}/models"
    ModelRegistry(root).promote(model, "ecg")
    registry = ModelRegistry(root, max_tries=2)
    real = registry._current

    def stale(name):  # always the first pointer: the claim of number 2 is taken by then
        record, stored = real(name)
        return (record.__class__(**{**record.to_dict(), "model_version": 1}), stored) if record else (None, None)

    ModelRegistry(root).promote(model, "ecg")  # promotion 2
    monkeypatch.setattr(registry, "_current", lambda name: stale(name))
    with pytest.raises(PromotionConflictError, match=r"s3://seqae-test/models: 2 concurrent promotion\(s\) of 'ecg' "
                                                     r"won every attempt of this one; the last winner was 0123abcd "
                                                     r"\(promotion 2\)\. Retry the promotion"):
        registry.promote(model, "ecg")
    assert len(ModelRegistry(root).history("ecg")) == 2
    assert len({k.split("/")[1] for k in keys(f"{root}/ecg") if k.startswith("versions/")}) == 2  # its snapshot gone


def test_a_claimed_number_whose_promoter_died_is_moved_on_to_by_the_next(s3, tmp_path):
    """A promoter killed after claiming history/<n>.json (its snapshot whole) and before moving the
    pointer: the next promotion moves the pointer to it first, then takes n + 1."""
    model = fake_model(tmp_path / "m")
    root = f"s3://{s3.bucket}/models"
    first = ModelRegistry(root).promote(model, "ecg")
    pointer = Location.of(f"{root}/ecg/current.json")
    before = pointer.read_bytes()
    second = ModelRegistry(root).promote(model, "ecg")
    with pointer.filesystem.open_output_stream(pointer.path) as stream:  # as if the pointer never moved
        stream.write(before)
    third = ModelRegistry(root).promote(model, "ecg")
    assert [p.model_version for p in (first, second, third)] == [1, 2, 3]
    assert ModelRegistry(root).history("ecg") == [first, second, third]


def test_promotion_on_a_store_without_conditional_writes_is_refused_unless_single_writer(tmp_path):
    model = fake_model(tmp_path / "m")
    with pytest.raises(PromotionError, match=r"^mock://models: promotion needs conditional writes \(S3\) or a local "
                                             r"filesystem; found mock, which has none in pyarrow\.fs\."):
        ModelRegistry("mock:///models").promote(model, "ecg")


@pytest.mark.parametrize("call", ["registry", "train", "export", "threshold", "evaluate"])
def test_library_entry_points_refuse_credentials_in_a_uri(call, tmp_path):
    uri = "s3://AKIA:Zq9s3cr3t@bucket/m"
    from seqae.anomaly import fit_threshold
    from seqae.evaluate import evaluate
    from seqae.export import export
    from seqae.train import train

    calls = {"registry": lambda: ModelRegistry(uri), "train": lambda: train(str(tmp_path), uri),
             "export": lambda: export(uri), "threshold": lambda: fit_threshold(uri),
             "evaluate": lambda: evaluate(str(tmp_path), str(tmp_path), uri)}
    pytest.importorskip("tensorflow") if call in ("train", "export") else None
    with pytest.raises(SeqaeError, match=r"^s3://\*\*\*@bucket/m: credentials in a URI are refused") as caught:
        calls[call]()
    assert "Zq9s3cr3t" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_file_rewritten_under_a_reader_is_refused_by_its_checksum(s3, tmp_path, monkeypatch):
    from seqae.modelstore import local_model_dir, upload_model_dir

    monkeypatch.setenv("SEQAE_CACHE_DIR", str(tmp_path / "cache"))
    model = fake_model(tmp_path / "m")
    uri = f"s3://{s3.bucket}/models/m"
    upload_model_dir(model, uri)
    cached = local_model_dir(uri)
    assert (cached / names.SCORER_ONNX).read_bytes() == (model / names.SCORER_ONNX).read_bytes()
    assert local_model_dir(uri) == cached  # keyed by content: no second download
    target = Location.of(f"{uri}/{names.MODEL_FILE}")
    with target.filesystem.open_output_stream(target.path) as stream:  # a writer in progress
        stream.write(b"half")
    meta = json.loads(Location.of(f"{uri}/{names.METADATA_FILE}").read_bytes())
    meta["created_at"] = "changed"  # another seqae.json, not yet cached
    with Location.of(uri).filesystem.open_output_stream(f"{s3.bucket}/models/m/{names.METADATA_FILE}") as stream:
        stream.write(json.dumps(meta).encode())
    monkeypatch.setenv("SEQAE_CACHE_DIR", str(tmp_path / "cache2"))
    with pytest.raises(ModelDirError, match=r"model\.keras: sha256 expected .* \(as seqae\.json lists it\), found "
                                            r".*: the directory is being rewritten; retry once its writer is done"):
        local_model_dir(uri)


@slow
def test_train_export_threshold_evaluate_promote_and_embed_on_s3(s3, sine_dir, tmp_path, monkeypatch):
    from seqae.anomaly import fit_threshold
    from seqae.evaluate import evaluate
    from seqae.export import export
    from seqae.infer import InferenceModel, embed
    from seqae.thresholds import Threshold, ThresholdConfig
    from seqae.train import train

    monkeypatch.setenv("SEQAE_CACHE_DIR", str(tmp_path / "cache"))
    data = upload(sine_dir, f"s3://{s3.bucket}/data")
    staging = f"s3://{s3.bucket}/models/ecg/staging/run-1"
    result = train(data, staging, model_config=ModelConfig(units=4, mode="composite", horizon=2),
                   train_config=TrainConfig(batch_size=32, max_epochs=2))
    assert result.model_dir == staging
    assert keys(staging) == [names.LOSS_PLOT_FILE, names.MODEL_FILE, names.METADATA_FILE]
    meta = json.loads(Location.of(f"{staging}/{names.METADATA_FILE}").read_bytes())
    assert sorted(meta["artifacts"]) == [names.LOSS_PLOT_FILE, names.MODEL_FILE]

    exported = export(staging)
    assert exported.parity["passed"] is True
    assert {names.ENCODER_ONNX, names.SCORER_ONNX, names.REFERENCE_FILE} <= set(keys(staging))
    fitted = fit_threshold(staging, ThresholdConfig(method="percentile", false_alarm_rate=0.05), data=data,
                           device="cpu")  # the tiny reference holds 8 rows
    assert Threshold.load(staging).threshold_ == fitted.threshold_
    assert names.THRESHOLD_FILE in json.loads(Location.of(f"{staging}/{names.METADATA_FILE}").read_bytes())["artifacts"]
    report = evaluate(staging, data, f"s3://{s3.bucket}/evaluation")
    assert "report.json" in keys(f"s3://{s3.bucket}/evaluation") and report["data"] == data

    root = f"s3://{s3.bucket}/models"
    promotions = promote_concurrently(root, [staging]) + promote_concurrently(root, [staging])
    check_registry(root, promotions)
    current = ModelRegistry(root).current_dir("ecg")
    out = f"s3://{s3.bucket}/out"
    run = embed(current, data, out, EmbedConfig(device="cpu"))
    assert run.totals["rows_written"] == 96 and run.totals["shards_done"] == 1
    assert InferenceModel.open(current, EmbedConfig(device="cpu")).identity.model_version == 16
    written = [k for k in keys(out) if k.startswith("embeddings/")]
    with Location.of(out).filesystem.open_input_file(f"{s3.bucket}/out/{written[0]}") as file:
        metadata = pq.ParquetFile(file).schema_arrow.metadata or {}
    records = [json.loads(Location.of(f"{out}/{k}").read_bytes()) for k in keys(out) if k.startswith("_seqae/manifest/")]
    found = [str(metadata.get(b"seqae", b""))] + [json.dumps(r) for r in records]
    assert any('"model_version": 16' in text for text in found), found  # the outputs carry the promotion number


class RequestCounter:
    """Counts the HTTP requests moto's server answers, by method and by the first part of the key."""

    def __init__(self, monkeypatch, bucket: str):
        from moto.moto_server import werkzeug_app

        self.counts: collections.Counter = collections.Counter()
        self.bucket = bucket
        real = werkzeug_app.DomainDispatcherApplication.__call__

        def counting(app, environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path.startswith(f"/{bucket}"):
                part = path[len(bucket) + 2:].split("/", 1)[0]
                if not part:  # a listing (or the bucket itself): named by the prefix it lists
                    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
                    part = (query.get("prefix", [""])[0].split("/", 1)[0] or "bucket") + " (list)"
                self.counts[(environ["REQUEST_METHOD"], part)] += 1
            return real(app, environ, start_response)

        monkeypatch.setattr(werkzeug_app.DomainDispatcherApplication, "__call__", counting)

    def take(self) -> dict[str, int]:
        taken = {f"{method} {part}": n for (method, part), n in sorted(self.counts.items())}
        self.counts.clear()
        return taken


@slow
def test_object_store_requests_of_one_shard(s3, model_dir, sine_dir, tmp_path, monkeypatch, capsys):
    """The figures in docs/scaling-out.md: ``pytest -m slow -s tests/test_object_store_lifecycle.py -k requests``."""
    from seqae.infer import embed

    monkeypatch.setenv("SEQAE_CACHE_DIR", str(tmp_path / "cache"))
    counter = RequestCounter(monkeypatch, s3.bucket)
    data = upload(sine_dir, f"s3://{s3.bucket}/data")
    staging = f"s3://{s3.bucket}/staging"
    from seqae.modelstore import upload_model_dir

    upload_model_dir(model_dir, staging)
    counter.take()
    figures = {}
    figures["promote (first)"] = (ModelRegistry(f"s3://{s3.bucket}/models").promote(staging, "ecg"), counter.take())[1]
    figures["promote (next)"] = (ModelRegistry(f"s3://{s3.bucket}/models").promote(staging, "ecg"), counter.take())[1]
    current = ModelRegistry(f"s3://{s3.bucket}/models").current_dir("ecg")
    figures["resolve current"] = counter.take()
    embed(current, data, f"s3://{s3.bucket}/out", EmbedConfig(device="cpu"))
    figures["embed one shard"] = counter.take()
    embed(current, data, f"s3://{s3.bucket}/out", EmbedConfig(device="cpu"))
    figures["embed rerun (skips)"] = counter.take()
    for i in range(2):  # the same shard twice: what one more shard costs
        upload(sine_dir / "part-0.parquet", f"s3://{s3.bucket}/two/part-{i}.parquet")
    counter.take()
    embed(current, f"s3://{s3.bucket}/two", f"s3://{s3.bucket}/out2", EmbedConfig(device="cpu"))
    figures["embed two shards"] = counter.take()
    with capsys.disabled():
        print("\nobject-store requests:", json.dumps({k: {"total": sum(v.values()), **v} for k, v in figures.items()},
                                                      indent=1))
    assert sum(figures["embed one shard"].values()) > 0


@slow
def test_object_store_requests_of_the_flows(prefect_harness, s3, model_dir, sine_dir, tmp_path, monkeypatch):
    """The embed flow's figures in docs/scaling-out.md (registry and drift state on S3 too):
    ``pytest -m slow -s tests/test_object_store_lifecycle.py -k requests``."""
    from flows.definitions import embed as embed_flow
    from seqae.drift import DriftPolicy, check_drift, read_state
    from seqae.modelstore import upload_model_dir

    monkeypatch.setenv("SEQAE_CACHE_DIR", str(tmp_path / "cache"))
    counter = RequestCounter(monkeypatch, s3.bucket)
    bucket = f"s3://{s3.bucket}"
    upload(sine_dir, f"{bucket}/data")
    for i in range(2):
        upload(sine_dir / "part-0.parquet", f"{bucket}/two/part-{i}.parquet")
    upload_model_dir(model_dir, f"{bucket}/staging")
    promotion = ModelRegistry(f"{bucket}/models").promote(f"{bucket}/staging", "ecg")
    waits = DriftPolicy(min_rows=10**9)  # the state is read and written, no test runs
    counter.take()

    def run(data, out):
        embed_flow(data, out, f"{bucket}/models", "ecg", config=EmbedConfig(device="cpu"), drift=waits)
        return counter.take()

    figures = {"embed flow, one shard": run(f"{bucket}/data", f"{bucket}/out"),
               "embed flow, rerun (skips)": run(f"{bucket}/data", f"{bucket}/out"),
               "embed flow, two shards": run(f"{bucket}/two", f"{bucket}/out2")}
    check_drift(promotion.location, promotion.model_id, {f"{bucket}/data/part-0.parquet": 96}, waits,
                models_root=f"{bucket}/models", name="other")
    figures["drift state, first check (one shard)"] = counter.take()
    check_drift(promotion.location, promotion.model_id, {f"{bucket}/two/part-0.parquet": 96}, waits,
                models_root=f"{bucket}/models", name="other")
    figures["drift state, next check (one shard)"] = counter.take()
    # Shown with -s (and on a failure). Not through capsys.disabled(): where this test is the first to
    # start the session's Prefect server (this file run alone), that met a closed capture file.
    print("\nobject-store requests of the flows:", json.dumps(
        {k: {"total": sum(v.values()), **v} for k, v in figures.items()}, indent=1))
    assert [p["rows"] for p in read_state(f"{bucket}/models", "ecg").pending] == [96, 96, 96]
    assert figures["drift state, next check (one shard)"] == {"GET models": 1, "HEAD two": 1, "PUT models": 1}
