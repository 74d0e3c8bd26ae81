"""Every TensorRT name our code uses exists in TensorRT 11.4 (and 10.13, unless guarded).

TensorRT can't be installed on the development machines or in CI, so the build and runtime code
can't be run here. Its names can be checked: tests/data/tensorrt-*-api.json list every class with
its members, every enum with its values and every function of NVIDIA's real bindings (see
tests/data/README.md for how they are extracted). This test reads the source of the modules
that call TensorRT and checks:

- `trt.Name` and `trt.Name.member` (classes, enums, functions, enum values, class members);
- `receiver.member` where the receiver is a variable (or `self.` attribute) named after its
  TensorRT class, the convention those modules follow (`builder`, `config`, `engine`, ...);
- methods defined by our subclasses of `trt.Class` (callbacks TensorRT calls by name).

A name missing from 10.13 is allowed only where the code guards it with `hasattr(..., "name")`.
"""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MODULES = [ROOT / "deploy" / "runtimes" / "tensorrt.py", ROOT / "export" / "engine.py"]
# Variable name -> TensorRT class, as used in MODULES.
RECEIVERS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "error": "ParserError",
    "config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "cache": "ITimingCache",
    "serialized": "IHostMemory",
    "trt_runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
}


def load_api(name):
    return json.loads((DATA / name).read_text())


API_11 = load_api("tensorrt-11.4-api.json")
API_10 = load_api("tensorrt-10.13-api.json")


def _receiver(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def collect_uses(source: str):
    """(kind, owner, member, line) for every TensorRT name in `source`, and the hasattr-guarded names."""
    tree = ast.parse(source)
    uses, guarded = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
            if len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
                guarded.add(node.args[1].value)
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("__"):
                continue
            value = node.value
            if isinstance(value, ast.Name) and value.id == "trt":
                uses.append(("module", None, node.attr, node.lineno))
            elif isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) and value.value.id == "trt":
                uses.append(("member", value.attr, node.attr, node.lineno))
            elif _receiver(value) in RECEIVERS:
                uses.append(("member", RECEIVERS[_receiver(value)], node.attr, node.lineno))
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "trt":
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                            uses.append(("member", base.attr, item.name, item.lineno))
    return uses, guarded


def exists(api, kind, owner, member):
    if kind == "module":
        return member in api["classes"] or member in api["enums"] or member in api["functions"]
    if owner in api["enums"]:
        return member in api["enums"][owner]
    return member in api["classes"].get(owner, [])


def missing_names(source, api, guarded_ok=False):
    uses, guarded = collect_uses(source)
    return [
        f"line {line}: trt.{owner + '.' if owner else ''}{member}"
        for kind, owner, member, line in uses
        if not exists(api, kind, owner, member) and not (guarded_ok and member in guarded)
    ]


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_name_exists_in_tensorrt_11_4(module):
    assert API_11["version"].startswith("11.4")
    assert missing_names(module.read_text(), API_11) == []


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_unguarded_name_exists_in_tensorrt_10_13(module):
    assert API_10["version"].startswith("10.13")
    assert missing_names(module.read_text(), API_10, guarded_ok=True) == []


def test_the_check_sees_the_calls_that_matter():
    uses = set()
    for module in MODULES:
        found, _ = collect_uses(module.read_text())
        uses |= {(owner, member) for _, owner, member, _ in found}
    expected = {
        ("IExecutionContext", "execute_async_v3"),
        ("IExecutionContext", "set_input_shape"),
        ("IExecutionContext", "set_tensor_address"),
        ("ICudaEngine", "get_tensor_profile_shape"),
        ("Runtime", "deserialize_cuda_engine"),
        ("Builder", "build_serialized_network"),
        ("Builder", "create_network"),
        ("IBuilderConfig", "set_memory_pool_limit"),
        ("IBuilderConfig", "builder_optimization_level"),
        ("IBuilderConfig", "progress_monitor"),
        ("IOptimizationProfile", "set_shape"),
        ("OnnxParser", "parse_from_file"),
        ("ParserError", "node_name"),
        ("IProgressMonitor", "step_complete"),
        ("ILogger", "log"),
        ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        ("BuilderFlag", "TF32"),
        ("ITimingCache", "serialize"),
        (None, "nptype"),
    }
    assert expected <= uses, expected - uses
    assert len(uses) >= 40


def test_the_check_catches_names_tensorrt_11_removed():
    snippet = (
        "def build(trt, builder):\n"
        "    config = builder.create_builder_config()\n"
        "    config.set_flag(trt.BuilderFlag.FP16)\n"
        "    config.int8_calibrator = trt.IInt8EntropyCalibrator2()\n"
        "    return builder.platform_has_fast_fp16\n"
    )
    assert sorted(missing_names(snippet, API_11)) == [
        "line 3: trt.BuilderFlag.FP16",
        "line 4: trt.IBuilderConfig.int8_calibrator",
        "line 4: trt.IInt8EntropyCalibrator2",
        "line 5: trt.Builder.platform_has_fast_fp16",
    ]
    assert missing_names(snippet, API_10) == []
