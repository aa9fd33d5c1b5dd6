"""Architecture rules that a refactor could silently break."""

import pathlib
import subprocess
import sys

INFERENCE_MODULES = ["seqae", "seqae.cli", "seqae.data", "seqae.data.scan", "seqae.io", "seqae.session",
                     "seqae.embed", "seqae.artifacts", "seqae.runtime", "seqae.datasets"]


def test_inference_path_imports_neither_tensorflow_nor_prefect():
    code = (f"import importlib, sys\nfor m in {INFERENCE_MODULES!r}: importlib.import_module(m)\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tf2onnx', 'prefect'})\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_library_never_imports_prefect():
    root = pathlib.Path(__file__).resolve().parents[1] / "seqae"
    offenders = [str(p) for p in root.rglob("*.py") if "import prefect" in p.read_text() or "from prefect" in p.read_text()]
    assert offenders == []
