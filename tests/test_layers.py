"""The dependency rule of docs/design.md, checked on every import of every module.

    toolkit  <-  resnet  <-  deploy  <-  export  <-  benchmark

    deploy:  artifacts  <-  runtimes  <-  the rest of the foundation (inputs, Predictor, evaluation)
                                             <-  shipping  <-  one room per target  <-  cli

Each package imports only the layers below it (and itself). Inside `deploy`, the artifacts import
no runtime, and the runtimes nothing else of deploy; the foundation imports no target and not
`shipping`; `shipping` (what every target ships) imports the foundation only; a target
(`bundle`, `triton`, `ray_serve`) imports the foundation, `shipping` and itself, never another
target; `serving` holds only the old paths users' files name (shims onto the targets); the
commands (`deploy.cli`) may import everything of deploy. Imports inside functions count too.
`toolkit`, at the bottom, imports nothing heavier than NumPy and click, so that every `--help`
stays fast.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolkit", "resnet", "deploy", "export", "benchmark")
FOUNDATION = {"deploy", "deploy.artifacts", "deploy.runtimes", "deploy.preprocess", "deploy.datasets",
              "deploy.predictor", "deploy.evaluate"}  # fmt: skip
TARGETS = ("deploy.bundle", "deploy.triton", "deploy.ray_serve")
ALLOWED = {
    "toolkit": {"toolkit"},
    "resnet": {"toolkit", "resnet"},
    "deploy.artifacts": {"toolkit", "resnet", "deploy.artifacts"},
    "deploy.runtimes": {"toolkit", "resnet", "deploy.artifacts", "deploy.runtimes"},
    "deploy": {"toolkit", "resnet"} | FOUNDATION,
    "deploy.shipping": {"toolkit", "resnet", "deploy.shipping"} | FOUNDATION,
    **{target: {"toolkit", "resnet", "deploy.shipping", target} | FOUNDATION for target in TARGETS},
    "deploy.serving": {"toolkit", "resnet", "deploy.serving", *TARGETS},
    "deploy.cli": {"toolkit", "resnet", "deploy.*"},
    "export": {"toolkit", "resnet", "deploy.*", "export"},
    "benchmark": {"toolkit", "resnet", "deploy.*", "export", "benchmark"},
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


def allowed(target: str, layers: set[str]) -> bool:
    """Whether `target` is in one of `layers`: a layer is its module and the modules below it, but
    bare `deploy` is the package's own `__init__` (what it re-exports is the foundation) and
    `deploy.*` is all of deploy."""
    for layer in layers:
        if layer == "deploy.*" and (target == "deploy" or target.startswith("deploy.")):
            return True
        if target == layer or (layer != "deploy" and target.startswith(layer + ".")):
            return True
    return False


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
        if not allowed(target, ALLOWED[own]):
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


def test_the_check_catches_a_target_that_imports_another_or_a_foundation_that_imports_one(tmp_path):
    """No target imports another (the Ray writer read its artifact through Triton's module), and
    the foundation imports no target (the Predictor imported the bundle writer's module)."""
    for folder in ("ray_serve", "triton"):
        (tmp_path / "deploy" / folder).mkdir(parents=True)
    ray = tmp_path / "deploy" / "ray_serve" / "writer.py"
    ray.write_text("from ..triton.repository import copy_artifact\nfrom ..shipping.model import read_shipped_model\n")
    predictor = tmp_path / "deploy" / "predictor.py"
    predictor.write_text("from .bundle import write_bundle\nfrom .artifacts.bundle import Bundle\nimport deploy\n")
    assert violations(ray, tmp_path) == [
        "deploy/ray_serve/writer.py:1 (deploy.ray_serve) imports deploy.triton.repository"
    ]
    assert violations(predictor, tmp_path) == ["deploy/predictor.py:1 (deploy) imports deploy.bundle"]


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
