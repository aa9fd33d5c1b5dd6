"""Architecture rules that a refactor could silently break: imports run one way, with no cycle
(imports inside functions included), and the inference path never reaches TensorFlow or Prefect.
The layer table of docs/architecture.md is read here and held to the code, so the page cannot drift."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "seqae"
ARCHITECTURE_PAGE = ROOT.parent / "docs" / "architecture.md"
HEAVY = {"tensorflow", "keras", "tf2onnx", "onnxconverter_common", "prefect"}
INFERENCE_MODULES = ["seqae", "seqae.cli", "seqae.data", "seqae.scan", "seqae.io", "seqae.config", "seqae.modeldir",
                     "seqae.storage", "seqae.infer", "seqae.infer.job", "seqae.infer.session", "seqae.datasets",
                     "seqae.anomaly", "seqae.thresholds", "seqae.evaluate", "seqae.registry"]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
# Parsed once, at collection: CPython 3.11.7 keeps ast.parse's recursion counter in one shared struct
# (gh-106905), so parsing while another thread parses (Prefect's and TensorFlow's threads linger after
# earlier tests) can raise "AST constructor recursion depth mismatch".
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def import_nodes(tree: ast.AST, top_only: bool):
    """The import statements of a module; with ``top_only``, those that run when it is imported (not
    inside a function or lambda, nor under ``if TYPE_CHECKING:``)."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if top_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if top_only and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def imports_of(name: str, top_only: bool = False) -> set[str]:
    """Every module ``name`` imports, at the top or inside a function (only at the top with
    ``top_only``): seqae modules by their full name (``from pkg import sub`` counts as ``pkg.sub``
    when ``sub`` is a module), others by package."""
    tree = TREES[name]
    found: set[str] = set()
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in import_nodes(tree, top_only):
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


def read_layer_table(text: str) -> tuple[dict[str, int], dict[str, str]]:
    """The table under "## Layers": each module's layer number, and its TensorFlow column (the cell's
    text for every module of the row, or ``module: value`` parts separated by ``;``)."""
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    tensorflow: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or not cells[0].isdigit():
            continue
        names = re.findall(r"`(seqae[\w.]*)`", cells[1])
        for module in names:
            assert module not in layers, f"docs/architecture.md: {module} is in layers {layers[module]} and {cells[0]}"
            layers[module] = int(cells[0])
            tensorflow[module] = "" if "`" in cells[2] else cells[2]
        for part in cells[2].split(";") if "`" in cells[2] else []:
            value = part.split(":", 1)[1].strip()
            tensorflow.update({module: value for module in re.findall(r"`(seqae[\w.]*)`", part)})
    return layers, tensorflow


LAYERS, TENSORFLOW_COLUMN = read_layer_table(ARCHITECTURE_PAGE.read_text())


def parents(name: str) -> set[str]:
    """The packages whose ``__init__`` runs first when ``name`` is imported."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))} & set(MODULES)


TOP_GRAPH = {name: ({m for m in imports_of(name, top_only=True) if m in MODULES} | parents(name)) - {name}
             for name in MODULES}


def tensorflow_when(name: str) -> str:
    """``on import`` when importing ``name`` loads a heavy package, ``inside functions`` when only its
    functions' imports reach one, else empty."""
    def reaches(graph: dict[str, set[str]], top_only: bool) -> bool:
        seen, todo = set(), [name]
        while todo:
            node = todo.pop()
            if node in seen:
                continue
            seen.add(node)
            if imports_of(node, top_only) & HEAVY:
                return True
            todo.extend(graph.get(node, ()))
        return False

    return "on import" if reaches(TOP_GRAPH, True) else "inside functions" if reaches(GRAPH, False) else ""


def test_the_layer_table_names_every_module_once():
    missing = sorted(set(MODULES) - set(LAYERS))
    unknown = sorted(set(LAYERS) - set(MODULES))
    assert (missing, unknown) == ([], []), (
        f"docs/architecture.md, the layer table: add {missing} to a layer; remove {unknown}, which are not in seqae/")


def test_imports_point_down_the_layer_table():
    upward = sorted(f"{a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
                    for a, deps in GRAPH.items() for b in deps if a in LAYERS and b in LAYERS and LAYERS[b] > LAYERS[a])
    assert upward == [], "docs/architecture.md, the layer table: " + "; ".join(upward)


def test_the_layer_table_says_where_tensorflow_is_imported():
    wrong = {m: (TENSORFLOW_COLUMN[m], tensorflow_when(m)) for m in sorted(MODULES)
             if m in TENSORFLOW_COLUMN and TENSORFLOW_COLUMN[m] != tensorflow_when(m)}
    assert wrong == {}, "docs/architecture.md, the TensorFlow column (page, code): " + repr(wrong)


def test_the_layer_table_reader_reads_both_forms_of_the_tensorflow_column():
    text = ("# A\n\n## Layers\n\n| layer | modules | TensorFlow | what |\n|---|---|---|---|\n"
            "| 1 | `seqae.a`, `seqae.b` | | x |\n| 2 | `seqae.c`, `seqae.d` | `seqae.c`: on import; `seqae.d`: inside functions | y |\n"
            "| 3 | `seqae.e` | inside functions | z |\n\n## Next\n\n| 4 | `seqae.f` | | not read |\n")
    layers, tensorflow = read_layer_table(text)
    assert layers == {"seqae.a": 1, "seqae.b": 1, "seqae.c": 2, "seqae.d": 2, "seqae.e": 3}
    assert tensorflow == {"seqae.a": "", "seqae.b": "", "seqae.c": "on import", "seqae.d": "inside functions",
                          "seqae.e": "inside functions"}
