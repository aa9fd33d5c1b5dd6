"""The public API: ``import seqae`` gives the pipeline functions, the configs, the model and registry
classes and the errors, each imported on first use; the inference install never imports TensorFlow
or Prefect through it; a missing extra raises an error that names the ``pip install`` to run."""

import ast
import importlib
import json
import pathlib
import pickle
import subprocess
import sys

import pytest

import seqae
from seqae._optional import EXTRAS, MissingDependencyError, import_optional, missing_message
from seqae.errors import SeqaeError

INIT = pathlib.Path(seqae.__file__)
HEAVY = {"tensorflow", "keras", "tf2onnx", "onnxconverter_common", "prefect", "prefect_ray", "ray"}
INFERENCE_NAMES = ["embed", "embed_shard", "InferenceModel", "ModelRegistry", "fit_threshold", "drift", "EmbedConfig",
                   "SessionOptions", "ThresholdConfig", "SeqaeError", "__version__"]


def run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return the JSON it prints last."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


HEAVY_LOADED = f"sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r}))"


def test_import_seqae_imports_only_the_version():
    loaded = run_python("import json, sys\nimport seqae\n"
                        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'seqae')))")
    assert loaded == ["seqae", "seqae._version"]


@pytest.mark.parametrize("names", [INFERENCE_NAMES, sorted(seqae.__all__)], ids=["inference", "everything"])
def test_the_public_names_import_neither_tensorflow_nor_prefect(names):
    code = (f"import json, sys\nimport seqae\nfor name in {names!r}: getattr(seqae, name)\n"
            f"print(json.dumps({HEAVY_LOADED}))")
    assert run_python(code) == []


def test_from_seqae_import_star_imports_neither_tensorflow_nor_prefect():
    assert run_python(f"import json, sys\nfrom seqae import *\nprint(json.dumps({HEAVY_LOADED}))") == []


@pytest.mark.parametrize("name, module", sorted(seqae._LAZY.items()))
def test_each_public_name_is_the_object_of_its_home_module(name, module):
    assert getattr(seqae, name) is getattr(importlib.import_module(module), name)
    assert name in vars(seqae)  # cached: the next lookup does not call __getattr__


INIT_TREE = ast.parse(INIT.read_text())  # at collection: see TREES in tests/test_imports.py


def type_checking_imports() -> dict[str, str]:
    """The names imported under ``if TYPE_CHECKING:`` in seqae/__init__.py, with their modules."""
    tree = INIT_TREE
    block = next(n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


def test_all_the_lazy_table_and_the_type_checking_block_name_the_same_things():
    assert type_checking_imports() == seqae._LAZY
    assert sorted(seqae.__all__) == seqae.__all__
    assert set(seqae.__all__) == set(seqae._LAZY) | {"__version__", "load_model"}
    assert set(seqae.__all__) <= set(dir(seqae))


def test_the_issue_23_names_are_public():
    wanted = {"train", "export", "embed", "embed_shard", "fit_threshold", "evaluate", "drift", "ModelConfig",
              "DataConfig", "TrainConfig", "ExportConfig", "EmbedConfig", "SessionOptions", "ThresholdConfig",
              "InferenceModel", "ModelRegistry", "SeqaeError", "__version__", "load_model"}
    assert wanted <= set(seqae.__all__)


def test_seqae_infer_exports_only_what_a_user_of_the_embed_job_needs():
    # The plumbing the flows, the CLI and the tests share (OutputFolder, plan_embed, reuse_key, ...)
    # is imported from its submodule, so it can change without a deprecation.
    import seqae.infer

    assert sorted(seqae.infer.__all__) == [
        "CommitConflictError", "EmbedConfig", "EmbedReport", "FolderBusyError", "InferenceModel", "SessionOptions",
        "ShardResult", "committed_outputs", "embed", "embed_shard", "plan_outputs"]
    assert not {"OutputFolder", "plan_embed", "prepare_embed", "reuse_key", "write_summary"} & set(vars(seqae.infer))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match=r"^module 'seqae' has no attribute 'no_such_name'$"):
        seqae.no_such_name  # noqa: B018
    assert not hasattr(seqae, "no_such_name")


def test_the_cli_fit_threshold_is_the_public_one():
    assert "from seqae.anomaly import fit_threshold" in (INIT.parent / "cli.py").read_text()
    assert seqae.fit_threshold.__module__ == "seqae.anomaly"


@pytest.mark.parametrize("first", ["function", "submodule"])
@pytest.mark.parametrize("name", ["train", "export", "evaluate"])
def test_a_name_shared_with_a_submodule_is_the_function_whichever_is_imported_first(name, first):
    touch = {"function": f"seqae.{name}", "submodule": f"importlib.import_module('seqae.{name}')"}
    order = [touch[first], *(v for k, v in touch.items() if k != first)]
    code = (f"import importlib, json, sys, types\nimport seqae\n{order[0]}\n{order[1]}\nimport seqae.{name}\n"
            f"value = seqae.{name}\n"
            f"print(json.dumps([isinstance(value, types.FunctionType), "
            f"value is sys.modules['seqae.{name}'].{name}]))")
    assert run_python(code) == [True, True]


def test_load_model_is_kept_for_backward_compatibility():
    assert callable(seqae.load_model) and "load_model" in seqae.__all__
    assert "backward compatibility" in seqae.load_model.__doc__


# --- a missing extra --------------------------------------------------------------------------------

WITHOUT_TENSORFLOW = ("import json, sys\nfor m in ('tensorflow', 'keras', 'tf2onnx'): sys.modules[m] = None\n"
                      "import seqae\n")


def call_without_tensorflow(call: str) -> dict:
    """Run ``call`` where TensorFlow, Keras and tf2onnx cannot be imported; what it raised."""
    code = (WITHOUT_TENSORFLOW + f"try:\n    {call}\nexcept Exception as exc:\n"
            "    print(json.dumps({'type': type(exc).__name__, 'message': str(exc), 'name': getattr(exc, 'name', None),"
            " 'extra': getattr(exc, 'extra', None), 'seqae': isinstance(exc, seqae.SeqaeError),"
            " 'import_error': isinstance(exc, ImportError)}))\nelse:\n    print(json.dumps(None))")
    return run_python(code)


TRAIN_EXTRA = "install the 'train' extra: pip install 'seqae[train]'"


@pytest.mark.parametrize("call, needed_for", [
    ("seqae.load_model('model')", "seqae.load_model"),
    ("seqae.train('data', 'model')", "seqae.train"),
    ("seqae.export('model')", "seqae.export"),
], ids=["load_model", "train", "export"])
def test_a_training_entry_point_without_tensorflow_names_the_pip_install(call, needed_for):
    raised = call_without_tensorflow(call)
    assert raised == {"type": "MissingDependencyError", "name": "tensorflow", "extra": "train", "seqae": True,
                      "import_error": True,
                      "message": f"{needed_for} needs tensorflow, which is not installed; {TRAIN_EXTRA}"}


def test_evaluate_without_matplotlib_names_the_pip_install():
    raised = call_without_tensorflow("sys.modules['matplotlib'] = None\n    seqae.evaluate('model', 'data', 'out')")
    assert raised == {"type": "MissingDependencyError", "name": "matplotlib", "extra": "train", "seqae": True,
                      "import_error": True,
                      "message": f"seqae.evaluate (its plots) needs matplotlib, which is not installed; {TRAIN_EXTRA}"}


def test_without_tensorflow_the_inference_names_still_import():
    code = WITHOUT_TENSORFLOW + f"for name in {INFERENCE_NAMES!r}: getattr(seqae, name)\nprint(json.dumps(True))"
    assert run_python(code) is True


@pytest.mark.parametrize("module, extra, needed_for, missing, expected", [
    ("tensorflow", "train", "seqae.train", None,
     "seqae.train needs tensorflow, which is not installed; install the 'train' extra: pip install 'seqae[train]'"),
    ("prefect", "flows", None, "prefect",
     "this needs prefect, which is not installed; install the 'flows' extra: pip install 'seqae[flows]'"),
    ("tf2onnx", "train", "seqae.export", "onnx",
     "seqae.export needs tf2onnx, which cannot be imported: onnx is not installed; install the 'train' extra: "
     "pip install 'seqae[train]'"),
])
def test_the_missing_dependency_message(module, extra, needed_for, missing, expected):
    assert missing_message(module, extra, missing=missing, needed_for=needed_for) == expected


def test_import_optional_returns_the_module_when_it_is_installed():
    assert import_optional("json", "train") is json


def test_import_optional_names_the_extra_of_a_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect", None)
    with pytest.raises(MissingDependencyError) as caught:
        import_optional("prefect", "flows", needed_for="the flows")
    assert str(caught.value) == ("the flows needs prefect, which is not installed; install the 'flows' extra: "
                                 "pip install 'seqae[flows]'")
    assert (caught.value.name, caught.value.extra) == ("prefect", "flows")
    assert isinstance(caught.value, SeqaeError) and isinstance(caught.value, ModuleNotFoundError)
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_import_optional_names_a_missing_dependency_of_the_module(tmp_path, monkeypatch):
    (tmp_path / "seqae_test_wrapper.py").write_text("import seqae_test_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError) as caught:
        import_optional("seqae_test_wrapper", "ray")
    assert str(caught.value) == ("this needs seqae_test_wrapper, which cannot be imported: "
                                 "seqae_test_absent_dependency is not installed; install the 'ray' extra: "
                                 "pip install 'seqae[ray]'")
    assert caught.value.name == "seqae_test_absent_dependency"


def test_import_optional_lets_any_other_import_error_through(tmp_path, monkeypatch):
    # A broken install (a CUDA library that fails to load) is not fixed by installing the extra again.
    (tmp_path / "seqae_test_broken.py").write_text("raise ImportError('libcudart.so.12: cannot open shared object')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="libcudart") as caught:
        import_optional("seqae_test_broken", "train")
    assert not isinstance(caught.value, MissingDependencyError)


@pytest.mark.parametrize("extra", ["dev", "Train", ""])
def test_import_optional_refuses_an_unknown_extra(extra):
    with pytest.raises(ValueError, match=rf"^extra: expected one of train, flows, ray, got {extra!r}$"):
        import_optional("json", extra)
    assert "dev" not in EXTRAS


def test_the_extras_are_those_of_pyproject():
    text = (INIT.parents[1] / "pyproject.toml").read_text()
    optional = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    for extra in EXTRAS:
        assert f"\n{extra} = [" in optional, extra


def test_the_missing_dependency_error_survives_pickling():
    # Ray and Prefect carry a task's exception to another process.
    error = MissingDependencyError("seqae.train needs tensorflow", name="tensorflow", extra="train")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.name, copy.extra) == (MissingDependencyError, str(error), "tensorflow", "train")
