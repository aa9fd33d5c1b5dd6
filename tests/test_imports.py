"""Architecture rules that a refactor could silently break: imports run one way, with no cycle
(imports inside functions included), and the inference path never reaches TensorFlow or Prefect."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "seqae"
HEAVY = {"tensorflow", "keras", "tf2onnx", "onnxconverter_common", "prefect"}
INFERENCE_MODULES = ["seqae", "seqae.cli", "seqae.data", "seqae.scan", "seqae.io", "seqae.config", "seqae.modeldir",
                     "seqae.storage", "seqae.infer", "seqae.infer.job", "seqae.infer.session", "seqae.datasets",
                     "seqae.anomaly", "seqae.thresholds", "seqae.evaluate", "seqae.registry"]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports, at the top or inside a function: seqae modules by their full
    name (``from pkg import sub`` counts as ``pkg.sub`` when ``sub`` is a module), others by package."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m if m.startswith("seqae") else m.split(".")[0] for m in found}


GRAPH = {name: {m for m in imports_of(name) if m in MODULES and m != name} for name in MODULES}


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(GRAPH.get(node, ()))
    return seen


def test_no_import_cycle_inside_seqae():
    assert find_cycle() is None, " -> ".join(find_cycle())


def test_the_cycle_finder_finds_a_cycle():
    GRAPH["seqae.storage"].add("seqae.io")  # io imports storage: a back edge makes a cycle
    try:
        assert find_cycle() is not None
    finally:
        GRAPH["seqae.storage"].discard("seqae.io")


@pytest.mark.parametrize("root", sorted(m for m in MODULES if m.startswith(("seqae.infer", "seqae.io", "seqae.data",
                                                                              "seqae.storage", "seqae.config"))))
def test_inference_layers_never_reach_tensorflow_or_prefect(root):
    heavy = {(m, h) for m in reachable(root) for h in imports_of(m) & HEAVY}
    assert heavy == set(), f"{root} reaches {sorted(heavy)}"


def test_data_imports_neither_io_nor_infer():
    for name in (m for m in MODULES if m.startswith("seqae.data")):
        assert not {m for m in reachable(name) if m.startswith(("seqae.io", "seqae.infer", "seqae.scan"))}, name


def test_io_imports_nothing_of_infer():
    assert not {m for m in reachable("seqae.io") if m.startswith("seqae.infer")}


def test_inference_path_imports_neither_tensorflow_nor_prefect():
    code = (f"import importlib, sys\nfor m in {INFERENCE_MODULES!r}: importlib.import_module(m)\n"
            f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {HEAVY!r})\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_library_never_imports_prefect():
    offenders = [str(p) for p in ROOT.rglob("*.py") if "prefect" in imports_of(module_name(p))]
    assert offenders == []
