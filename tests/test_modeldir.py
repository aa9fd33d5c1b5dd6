"""seqae.json read back: every field seqae uses is checked, and a bad one is one line naming the
file, the field, what was expected and what was found (no traceback, no silent nonsense)."""

import hashlib
import json
import re

import pytest

from seqae import names
from seqae.config import DataConfig, ModelConfig
from seqae.errors import ModelDirError
from seqae.modeldir import ModelInfo, contract_sha256


def metadata(exported=True, **changes):
    """A valid seqae.json, as train (and export) write it."""
    meta = {"format": "seqae.model/1", "model_id": "0123abcd", "model_version": 2,
            "model": ModelConfig(num_features=1, units=4, mode="composite", horizon=2).to_dict(),
            "data": DataConfig(min_length=3, max_length=24).to_dict(), "feature_names": ["value"]}
    if exported:
        meta["export"] = {"files": {
            name: {"sha256": hashlib.sha256(name.encode()).hexdigest(), "precision": "fp32", "graph": graph}
            for name, graph in ((names.ENCODER_ONNX, "encoder"), (names.SCORER_ONNX, "scorer"))}}
        meta["export"]["contract_sha256"] = contract_sha256(meta)
    meta.update(changes)
    return meta


def write(tmp_path, meta):
    (tmp_path / names.METADATA_FILE).write_text(json.dumps(meta))
    return tmp_path


def edit(meta, dotted, value):
    """``meta`` with the field at ``dotted`` (``model.units``) set to ``value``."""
    *parents, last = dotted.split(".")
    node = meta
    for key in parents:
        node = node[key]
    node[last] = value
    return meta


def test_a_valid_file_reads_back(tmp_path):
    info = ModelInfo.read(write(tmp_path, metadata()))
    assert info.model_id == "0123abcd" and info.model_version == 2 and info.model.units == 4
    assert set(info.files) == {"encoder.onnx", "scorer.onnx"} and info.feature_names == ("value",)
    assert info.num_features == 1
    assert ModelInfo.read(write(tmp_path, metadata(exported=False))).files == {}


# field -> (value written, the message expected after "<path>/seqae.json: ")
CASES = {
    "model_version_text": ("model_version", "abc", "model_version: expected a positive integer, found 'abc'"),
    "model_version_zero": ("model_version", 0, "model_version: expected a positive integer, found 0"),
    "model_version_bool": ("model_version", True, "model_version: expected a positive integer, found True"),
    "model_id_a_path": ("model_id", "../../etc", "model_id: expected a plain identifier (letters, digits, '.', '_', "
                                                 "'-'; as seqae train writes), found '../../etc'"),
    "model_id_a_number": ("model_id", 7, "model_id: expected a plain identifier (letters, digits, '.', '_', '-'; as "
                                         "seqae train writes), found 7"),
    "units_zero": ("model.units", 0, "model: units: expected a positive integer, got 0"),
    "latent_dim_text": ("model.latent_dim", "3", "model: latent_dim: expected a positive integer, got '3'"),
    "horizon_negative": ("model.horizon", -1, "model: horizon: the composite mode needs a positive integer, got -1"),
    "horizon_beyond_min_length": ("model.horizon", 5, "model.horizon: expected at most data.min_length - 1 = 2 (one "
                                                      "step to encode, the rest predicted), found 5"),
    "num_features_missing": ("model.num_features", None, "model.num_features is missing; expected the feature "
                                                         "count of the data"),
    "feature_names_too_many": ("feature_names", ["a", "b"], "feature_names: expected a list of 1 name(s) "
                                                            "(model.num_features), found list ['a', 'b']"),
    "format": ("format", "other/2", "format: expected 'seqae.model/1', found 'other/2'"),
    "files_empty": ("export.files", {}, "export.files: expected an object naming encoder.onnx and scorer.onnx (as "
                                        "seqae export writes it), found dict {}"),
    "files_a_list": ("export.files", [1], "export.files: expected an object naming encoder.onnx and scorer.onnx (as "
                                          "seqae export writes it), found list [1]"),
    "export_a_string": ("export", "yes", "export: expected an object written by seqae export, found 'yes'"),
    "sha256_short": ("export.files.scorer.onnx", {"sha256": "abc"}, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hand_edited_field_is_one_line_naming_file_field_expected_and_found(tmp_path, case):
    dotted, value, message = CASES[case]
    meta = metadata()
    if dotted == "export.files.scorer.onnx":
        meta["export"]["files"]["scorer.onnx"] = value
        message = "export.files.scorer.onnx.sha256: expected 64 lowercase hex digits, found 'abc'"
    else:
        edit(meta, dotted, value)
    with pytest.raises(ModelDirError) as caught:
        ModelInfo.read(write(tmp_path, meta))
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / 'seqae.json'}: {message}"), text


def test_a_file_listed_under_a_path_is_refused(tmp_path):
    meta = metadata()
    meta["export"]["files"]["../model.keras"] = {"sha256": "0" * 64, "precision": "fp32", "graph": "scorer"}
    with pytest.raises(ModelDirError, match=r"export\.files: expected ONNX files named encoder\.onnx, scorer\.onnx, "
                                            r"scorer\.fp16\.onnx, scorer\.int8\.onnx, neighbours\.onnx, found '\.\./model\.keras'"):
        ModelInfo.read(write(tmp_path, meta))


@pytest.mark.parametrize("dotted, value", [("model.units", 8), ("model.latent_dim", 3), ("data.max_length", 99),
                                           ("feature_names", ["renamed"])])
def test_an_edit_after_export_is_caught_by_the_contract_checksum(tmp_path, dotted, value):
    """Valid values, but not those the ONNX files were exported from: embed would run nonsense."""
    meta = edit(metadata(), dotted, value)
    with pytest.raises(ModelDirError, match=re.escape(
            f"{tmp_path / 'seqae.json'}: model, data, feature_names: expected the sections the ONNX files were "
            "exported from (sha256 ") + r"[0-9a-f]{16}\.\.\.\), found sha256 [0-9a-f]{16}\.\.\.: the file was edited "
            r"after export; restore it, or re-run seqae export to serve the edited sections$"):
        ModelInfo.read(write(tmp_path, meta))
    ModelInfo.read(tmp_path, verify_contract=False)  # what seqae export reads: it records the sections anew
    # Before export the same edit is only checked for validity.
    meta = edit(metadata(exported=False), dotted, value)
    ModelInfo.read(write(tmp_path, meta))


@pytest.mark.parametrize("text, found", [("[]", "list"), ("null", "NoneType"), ('"x"', "str")])
def test_not_an_object(tmp_path, text, found):
    (tmp_path / names.METADATA_FILE).write_text(text)
    with pytest.raises(ModelDirError, match=f"expected a JSON object written by seqae train, found {found}$"):
        ModelInfo.read(tmp_path)
