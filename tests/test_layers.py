"""The dependency rule of docs/design.md, checked on every import of every module.

    toolkit  <-  resnet  <-  deploy (artifacts <- runtimes <- formats)  <-  export  <-  benchmark

Each package imports only the layers below it (and itself); inside `deploy`, the artifacts
import no runtime or format, and the runtimes no format. Imports inside functions count too.
`toolkit`, at the bottom, imports nothing heavier than NumPy and click, so that every `--help`
stays fast.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "resnet", "deploy", "export", "benchmark")
ALLOWED = {
    "toolkit": {"toolkit"},
    "resnet": {"toolkit", "resnet"},
    "deploy.artifacts": {"toolkit", "resnet", "deploy.artifacts"},
    "deploy.runtimes": {"toolkit", "resnet", "deploy.artifacts", "deploy.runtimes"},
    "deploy": {"toolkit", "resnet", "deploy"},
    "export": {"toolkit", "resnet", "deploy", "export"},
    "benchmark": {"toolkit", "resnet", "deploy", "export", "benchmark"},
}
HEAVY = {"torch", "onnx", "onnxruntime", "tensorrt", "PIL", "matplotlib"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Absolute names of every module `path` imports, with the line."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found.append((target, node.lineno))
    return found


def layer_of(name: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if name == layer or name.startswith(layer + "."):
            return layer
    return None


SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def violations(path: Path, root: Path = ROOT) -> list[str]:
    own = layer_of(module_name(path, root))
    found = []
    for target, line in imports(path, root):
        if target.split(".")[0] not in PACKAGES:
            if own == "toolkit" and target.split(".")[0] in HEAVY:
                found.append(f"{path.relative_to(root)}:{line} imports {target}, too heavy for the bottom layer")
            continue
        allowed = ALLOWED[own]
        if not any(target == a or target.startswith(a + ".") for a in allowed):
            found.append(f"{path.relative_to(root)}:{line} ({own}) imports {target}")
    return found


def test_every_package_is_covered():
    assert len(SOURCES) > 40
    assert all(layer_of(module_name(p)) is not None for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    assert violations(path) == []


def test_the_check_catches_an_upward_import(tmp_path):
    fake_root = tmp_path
    (fake_root / "deploy" / "runtimes").mkdir(parents=True)
    bad = fake_root / "deploy" / "runtimes" / "bad.py"
    bad.write_text("from ..predictor import Predictor\nimport export.cli\nfrom resnet import create\n")
    tool = fake_root / "toolkit"
    tool.mkdir()
    (tool / "heavy.py").write_text("def f():\n    import torch\n")
    assert violations(bad, fake_root) == [
        "deploy/runtimes/bad.py:1 (deploy.runtimes) imports deploy.predictor",
        "deploy/runtimes/bad.py:2 (deploy.runtimes) imports export.cli",
    ]
    assert violations(tool / "heavy.py", fake_root) == [
        "toolkit/heavy.py:2 imports torch, too heavy for the bottom layer"
    ]


def test_reading_what_an_artifact_says_imports_no_torch(tmp_path):
    """A client reads a file's input spec with `deploy.read_onnx_info` (the README's Triton client
    does): the model's description (`Architecture`, `InputSpec`, the registry) and the artifact
    readers must work without importing torch."""
    import subprocess
    import sys

    import resnet
    from export import export_onnx

    path = tmp_path / "m.onnx"
    export_onnx(resnet.create(20, "cifar10"), path, validate=False)
    code = (
        "import sys\n"
        "import resnet, resnet.spec, resnet.architecture\n"
        "from deploy import read_onnx_info\n"
        f"info = read_onnx_info({str(path)!r})\n"
        "options = resnet.ModelOptions(50)\n"
        "print(info.architecture.depth, info.input_spec.height, options.name, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["20", "32", "resnet50", "False"]


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports (any import, inside functions too; `from package
    import name` counts as importing `package.name` when that is a module)."""
    sources = sorted(p for package in PACKAGES for p in (root / package).rglob("*.py"))
    names = {module_name(p, root) for p in sources}
    graph: dict[str, set[str]] = {}
    for path in sources:
        found = set()
        for target, _ in imports(path, root):
            found.add(target)
        node = ast.parse(path.read_text())
        for item in ast.walk(node):
            if isinstance(item, ast.ImportFrom):
                base = next((t for t, line in imports(path, root) if line == item.lineno), None)
                found.update(f"{base}.{alias.name}" for alias in item.names if base)
        graph[module_name(path, root)] = {t for t in found if t in names and t != module_name(path, root)}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or round a circle (Tarjan's
    strongly connected components of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_one_that_imports_it_back():
    """Across packages and inside one (`deploy.runtimes.base` took its choice tables from the
    runtimes that import it; the tables now live in the leaf `deploy.runtimes.choices`)."""
    assert import_circles(import_graph()) == []


def test_the_circle_check_finds_a_circle_inside_a_package(tmp_path):
    (tmp_path / "deploy" / "runtimes").mkdir(parents=True)
    (tmp_path / "deploy" / "runtimes" / "a.py").write_text("def f():\n    from .b import X\n")
    (tmp_path / "deploy" / "runtimes" / "b.py").write_text("from .c import Y\nX = 1\n")
    (tmp_path / "deploy" / "runtimes" / "c.py").write_text("from deploy.runtimes.a import f\nY = 2\n")
    (tmp_path / "deploy" / "runtimes" / "d.py").write_text("from .a import f\n")
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    assert import_circles(import_graph(tmp_path)) == [["deploy.runtimes.a", "deploy.runtimes.b", "deploy.runtimes.c"]]
