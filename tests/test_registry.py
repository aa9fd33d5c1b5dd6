"""The model registry: its files read back are checked, and concurrent promotions of one name are
serialised (8 threads, 8 processes), each ending with a complete snapshot and one history entry.

The model directories here are written by hand (seqae.json and two ONNX files with their sha256):
promotion checks checksums and the parity record, not what the graphs compute.
"""

import hashlib
import json
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from seqae import names
from seqae.config import DataConfig, ModelConfig
from seqae.modeldir import contract_sha256
from seqae.registry import ModelRegistry, Promotion, PromotionError, RegistryError
from seqae.storage import Location, replace_directory


def fake_model(path, model_id="0123abcd", passed=True):
    """An exported model directory as promotion sees it."""
    path.mkdir(parents=True)
    files = {}
    for name, graph in ((names.ENCODER_ONNX, "encoder"), (names.SCORER_ONNX, "scorer")):
        data = f"{model_id} {name}".encode() * 1000
        (path / name).write_bytes(data)
        files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "precision": "fp32", "graph": graph}
    (path / names.MODEL_FILE).write_bytes(b"keras" * 1000)
    meta = {"format": "seqae.model/1", "model_id": model_id, "model_version": 1,
            "model": ModelConfig(num_features=1, units=4).to_dict(), "data": DataConfig().to_dict(),
            "feature_names": ["value"]}
    meta["export"] = {"files": files, "parity": {"passed": passed, "failures": []}, "contract_sha256": contract_sha256(meta)}
    (path / names.METADATA_FILE).write_text(json.dumps(meta))
    return path


@pytest.fixture()
def registry(tmp_path):
    return ModelRegistry(tmp_path / "models")


def test_promote_snapshots_and_records(registry, tmp_path):
    first = registry.promote(fake_model(tmp_path / "a"), "ecg")
    snapshot = registry.current_dir("ecg")
    assert registry.current("ecg") == first and snapshot.parent == tmp_path / "models/ecg/versions"
    assert snapshot.name.startswith("0123abcd-") and first.model_version == 1
    assert (snapshot / names.SCORER_ONNX).read_bytes() == (tmp_path / "a/scorer.onnx").read_bytes()
    meta = json.loads((snapshot / names.METADATA_FILE).read_text())
    assert meta["model_version"] == 1 and meta["promotion"]["number"] == 1 and meta["promotion"]["trained_version"] == 1
    second = registry.promote(fake_model(tmp_path / "b", "4567ef"), "ecg")
    assert registry.history("ecg") == [first, second] and registry.current("ecg") == second
    assert second.model_version == 2 and sorted(os.listdir(tmp_path / "models/ecg/history")) == ["1.json", "2.json"]
    assert registry.current_dir("ecg") != snapshot and (snapshot / names.SCORER_ONNX).is_file()  # never rewritten
    with pytest.raises(PromotionError, match="the parity gate did not pass"):
        registry.promote(fake_model(tmp_path / "c", "89ab", passed=False), "ecg")
    assert registry.current("ecg") == second


def record(registry, tmp_path, **changes):
    promotion = registry.promote(fake_model(tmp_path / "m"), "ecg")
    return {**promotion.to_dict(), **changes}


CURRENT_CASES = {
    "empty_object": ({}, "missing key(s) name, model_id, model_version, location, source, parity_passed, "
                         "promoted_at; expected the keys"),
    "a_list": ([], "expected a promotion record (an object with name, model_id, model_version, location, source, "
                   "parity_passed, promoted_at), found []"),
    "null": (None, "expected a promotion record (an object with name, model_id, model_version, location, source, "
                   "parity_passed, promoted_at), found None"),
    "model_version_text": ({"model_version": "abc"}, "model_version: expected a positive integer, found 'abc'"),
    "parity_not_passed": ({"parity_passed": False}, "parity_passed: expected true (only a model whose parity gate "
                                                    "passed is promoted), found False"),
    "relative_location": ({"location": "versions/x"}, "location: expected an absolute path or a URI, found "
                                                       "'versions/x'"),
    "another_name": ({"name": "other"}, "name: expected 'ecg', found 'other'"),
    "unknown_key": ({"extra": 1}, "unknown key(s) extra; expected the keys"),
}


@pytest.mark.parametrize("case", sorted(CURRENT_CASES))
def test_a_bad_current_json_is_one_line_naming_the_field(registry, tmp_path, case):
    value, message = CURRENT_CASES[case]
    written = record(registry, tmp_path)
    data = {**written, **value} if isinstance(value, dict) and value else value
    path = tmp_path / "models/ecg/current.json"
    path.write_text(json.dumps(data))
    for call in (registry.current, registry.current_dir):
        with pytest.raises(RegistryError) as caught:
            call("ecg")
        assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("where", ["outside", "sibling_name", "symlink_out"])
def test_a_location_outside_the_registry_root_is_refused(registry, tmp_path, where):
    data = record(registry, tmp_path)
    outside = fake_model(tmp_path / "elsewhere" / data["model_id"])
    if where == "outside":
        data["location"] = str(outside)
    elif where == "sibling_name":  # another name's snapshot is not this name's
        data["location"] = str(tmp_path / "models/other/versions" / data["model_id"])
    else:
        snapshot = Path(data["location"])
        os.rename(snapshot, tmp_path / "moved")
        snapshot.symlink_to(outside)
    (tmp_path / "models/ecg/current.json").write_text(json.dumps(data))
    with pytest.raises(RegistryError, match=r"current\.json: location: expected .*/models/ecg/versions/0123abcd-<token> \(the "
                                            r"snapshot under the registry root .*/models\), found .*; a location "
                                            r"outside the root is refused"):
        registry.current_dir("ecg")


@pytest.mark.parametrize("history, message", [
    ({}, "expected a list of promotion records, found {}; restore it from a backup"),
    ("[1]", "entry 0: expected a promotion record"),
    ([{"name": "ecg"}], "entry 0: missing key(s) model_id"),
])
def test_a_bad_history_refuses_a_promotion_and_is_never_rewritten(registry, tmp_path, history, message):
    record(registry, tmp_path)
    path = tmp_path / "models/ecg/history.json"
    text = history if isinstance(history, str) else json.dumps(history)
    path.write_text(text)
    current = (tmp_path / "models/ecg/current.json").read_bytes()
    with pytest.raises(RegistryError) as caught:
        registry.promote(fake_model(tmp_path / "b", "4567ef"), "ecg")
    assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
    assert path.read_text() == text and (tmp_path / "models/ecg/current.json").read_bytes() == current
    assert not [n for n in os.listdir(tmp_path / "models/ecg/versions") if n.startswith("4567ef")]


def test_a_symlinked_lock_file_is_never_followed(registry, tmp_path):
    (tmp_path / "models/ecg").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "models/ecg/.promotion.lock").symlink_to(victim)
    with pytest.raises(RegistryError, match=r"\.promotion\.lock: cannot open the promotion lock \(.*\); expected a "
                                            r"plain file \(a symbolic link is never followed\)"):
        registry.promote(fake_model(tmp_path / "m"), "ecg")
    assert victim.read_text() == "keep"


def test_a_promotion_waits_for_the_lock_and_gives_up_with_a_message(tmp_path):
    model = fake_model(tmp_path / "m")
    holder, waiter = ModelRegistry(tmp_path / "models"), ModelRegistry(tmp_path / "models", lock_timeout=0.2)
    with holder.lock("ecg"):
        with pytest.raises(PromotionError, match=r"another promotion of 'ecg' held the lock for 0\.2 s"):
            waiter.promote(model, "ecg")
    assert waiter.promote(model, "ecg").model_id == "0123abcd"


def check_after_concurrent_promotions(root, models, promotions):
    """Every promotion recorded once with consecutive numbers, the pointer on the last, and every
    snapshot complete: the model's files byte for byte, its seqae.json numbered as its promotion."""
    registry = ModelRegistry(root)
    history = registry.history("ecg")
    assert sorted(p.promoted_at + p.source + p.location for p in history) == sorted(
        p.promoted_at + p.source + p.location for p in promotions)
    assert [p.model_version for p in history] == list(range(1, len(promotions) + 1))
    assert registry.current("ecg") == history[-1]  # current.json is the last promotion appended
    by_name = {m.name: m for m in models}
    for promotion in history:
        snapshot, model = Location.of(promotion.location), by_name[promotion.model_id]
        assert sorted(i.base_name for i in snapshot.children()) == sorted(os.listdir(model))
        for file in os.listdir(model):
            if file != names.METADATA_FILE:
                assert snapshot.join(file).read_bytes() == (model / file).read_bytes()
        meta = json.loads(snapshot.join(names.METADATA_FILE).read_bytes())
        assert meta["model_version"] == promotion.model_version == meta["promotion"]["number"]
    return history


def test_eight_concurrent_promotions_in_threads(tmp_path):
    models = [fake_model(tmp_path / f"m{i}", f"m{i}") for i in range(4)]
    start = threading.Barrier(8)

    def promote(i):
        start.wait()
        return ModelRegistry(tmp_path / "models").promote(models[i % 4], "ecg")

    with ThreadPoolExecutor(8) as pool:
        promotions = list(pool.map(promote, range(8)))
    check_after_concurrent_promotions(tmp_path / "models", models, promotions)


def promote_in_process(args):
    root, model, start = args
    start.wait()
    return ModelRegistry(root).promote(model, "ecg").to_dict()


@pytest.mark.slow  # spawns 8 interpreters (about 30 s on 2 busy cores)
def test_eight_concurrent_promotions_in_processes(tmp_path):
    models = [fake_model(tmp_path / f"m{i}", f"m{i}") for i in range(4)]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(8)
        with context.Pool(8) as pool:
            results = pool.map(promote_in_process, [(tmp_path / "models", models[i % 4], start) for i in range(8)])
    check_after_concurrent_promotions(tmp_path / "models", models, [Promotion(**r) for r in results])


# --- replace_directory's temporaries: only those of a writer that is gone are removed -------------------

def test_a_writer_in_progress_keeps_its_temporary_while_another_replaces_the_folder(tmp_path):
    target = tmp_path / "model"
    inside, release = threading.Event(), threading.Event()

    def slow_writer():
        with replace_directory(target) as tmp:
            (tmp / "a.txt").write_text("slow")
            inside.set()
            release.wait(10)
            (tmp / "b.txt").write_text("slow")  # its folder must still be there

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inside.wait(10)
    with replace_directory(target) as tmp:  # cleans up stale temporaries first
        (tmp / "a.txt").write_text("fast")
    release.set()
    thread.join()
    assert sorted(os.listdir(target)) == ["a.txt", "b.txt"] and (target / "a.txt").read_text() == "slow"
    assert os.listdir(tmp_path) == ["model"]


def test_the_temporaries_of_a_killed_writer_are_removed_and_unlocked_ones_of_unknown_origin_kept(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (tmp_path / ".model.dead0001.lock").write_text("")  # a writer killed while filling its folder
    (tmp_path / ".model.dead0001.tmp").mkdir()
    (tmp_path / ".model.dead0001.tmp" / "half").write_text("x")
    (tmp_path / ".model.legacy01.tmp").mkdir()  # no lock file: not provably stale
    with replace_directory(target) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(os.listdir(tmp_path)) == [".model.legacy01.tmp", "model"]


def test_the_previous_folder_of_a_writer_killed_between_its_renames_is_kept(tmp_path):
    """The target is missing and the folder set aside is the only copy: never deleted."""
    (tmp_path / ".model.dead0002.lock").write_text("")
    (tmp_path / ".model.dead0002.old.tmp").mkdir()
    with replace_directory(tmp_path / "model") as tmp:
        (tmp / "new").write_text("new")
    assert sorted(os.listdir(tmp_path)) == [".model.dead0002.lock", ".model.dead0002.old.tmp", "model"]
