"""Our TensorRT code, checked against NVIDIA's own bindings of TensorRT 11.4 and 10.13.

TensorRT can't be installed on the development machines or in CI, so the build and runtime code
can't be run here. What can be checked is how it calls TensorRT: tests/data/tensorrt-*-api.json
list every class with its members, every enum with its values and every function of NVIDIA's
real bindings, and under "members" each member's kind (method, static method, read-only or
read-write property, attribute) and its pybind11 signatures (tests/data/README.md says how they
are extracted). This test reads the source of the modules that call TensorRT and checks, against
both releases:

- names: `trt.Name`, `trt.Name.member`, and `receiver.member` where the receiver is a variable
  (or `self.` attribute) named after its TensorRT class, the convention those modules follow
  (`builder`, `config`, `engine`, `context`, ...); a name missing from 10.13 is allowed only
  where the code guards it with `hasattr(..., "name")`;
- kinds: a member that is called is a method or function (a class is constructed through its
  `__init__`), one that is assigned is a read-write property, one that is read is not a method;
- arguments: the positional count and the keyword names of every call fit one of the member's
  signatures;
- failure returns: every call whose declared return can signal failure (any `-> bool`, and the
  nullable or -1 returns NVIDIA's docstrings name in `FAILURE_RETURNS`) has its result tested;
- callbacks: the methods of our subclasses of TensorRT classes take as many arguments as
  TensorRT passes;
- one logger: every Builder, Runtime and OnnxParser is given the process-wide logger
  (`shared_logger()`), because TensorRT keeps the first logger of the process.

`test_the_check_catches_*` plant each kind of defect in a small snippet and prove it is found.
"""

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MODULES = [
    ROOT / "deploy" / "runtimes" / "tensorrt.py",
    ROOT / "export" / "engine.py",
]
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
# Returns that signal failure without being `-> bool`, from NVIDIA's binding docstrings
# (python/docstrings/infer/pyCoreDoc.h in NVIDIA/TensorRT) and the C++ API they wrap.
FAILURE_RETURNS = {
    "Runtime.deserialize_cuda_engine": "None",  # "The ICudaEngine, or None if it could not be deserialized."
    "Builder.build_serialized_network": "None",  # None when the build fails
    "IBuilderConfig.get_timing_cache": "None",  # "or None if no timing cache is set."
    "IBuilderConfig.create_timing_cache": "None",  # createTimingCache: nullptr for data it can't read
    "ICudaEngine.create_execution_context": "None",  # createExecutionContext: nullptr when memory runs out
    "IBuilderConfig.add_optimization_profile": "-1",  # "or -1 if the input is not valid."
}
LOGGER_TAKERS = {"Builder", "Runtime", "OnnxParser"}
SHARED_LOGGER = "shared_logger"


def load_api(name):
    return json.loads((DATA / name).read_text())


API_11 = load_api("tensorrt-11.4-api.json")
API_10 = load_api("tensorrt-10.13-api.json")
APIS = {"11.4": API_11, "10.13": API_10}
# TensorRT's lean runtime (tensorrt_lean 11.4, the module a board runs version-compatible engines
# with): the runtime module must use only what it has too.
API_LEAN = load_api("tensorrt-lean-11.4-api.json")
RUNTIME_MODULE = ROOT / "deploy" / "runtimes" / "tensorrt.py"


@dataclass
class Use:
    owner: str | None  # TensorRT class or enum; None for a module-level name (trt.X)
    member: str
    line: int
    context: str  # "call", "load" or "store"
    node: ast.AST
    positional: int = 0  # calls: positional arguments (not counting an explicit self)
    keywords: tuple = ()  # calls: keyword names

    @property
    def key(self) -> str:
        return f"{self.owner}.{self.member}" if self.owner else self.member

    def __str__(self) -> str:
        return f"line {self.line}: trt.{self.key}"


@dataclass
class Callback:
    base: str  # the TensorRT class we subclass
    name: str
    line: int
    parameters: int  # not counting self


def _receiver(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _parents(tree):
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    return parents


def collect(source: str):
    """(uses, callbacks, names guarded by hasattr, parents) of TensorRT in `source`."""
    tree = ast.parse(source)
    parents = _parents(tree)
    uses, callbacks, guarded = [], [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
            if len(node.args) == 2 and isinstance(node.args[1], ast.Constant):
                guarded.add(node.args[1].value)
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "trt":
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                            callbacks.append(Callback(base.attr, item.name, item.lineno, len(item.args.args) - 1))
        if not isinstance(node, ast.Attribute) or (node.attr.startswith("__") and node.attr != "__init__"):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id == "trt":
            owner = None
        elif isinstance(value, ast.Attribute) and isinstance(value.value, ast.Name) and value.value.id == "trt":
            owner = value.attr
        elif _receiver(value) in RECEIVERS:
            owner = RECEIVERS[_receiver(value)]
        else:
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Call) and parent.func is node:
            explicit_self = 1 if node.attr == "__init__" and owner is not None and _receiver(value) is None else 0
            uses.append(
                Use(
                    owner,
                    node.attr,
                    node.lineno,
                    "call",
                    parent,
                    len(parent.args) - explicit_self,
                    tuple(k.arg for k in parent.keywords),
                )
            )
        else:
            context = "store" if isinstance(node.ctx, ast.Store) else "load"
            uses.append(Use(owner, node.attr, node.lineno, context, node))
    uses.sort(key=lambda u: (u.line, u.node.col_offset))
    return uses, callbacks, guarded, parents


def exists(api, use: Use) -> bool:
    if use.owner is None:
        return use.member in api["classes"] or use.member in api["enums"] or use.member in api["functions"]
    if use.owner in api["enums"]:
        return use.member in api["enums"][use.owner]
    if use.member == "__init__":
        return use.owner in api["classes"]
    return use.member in api["classes"].get(use.owner, [])


def missing_names(source, api, guarded_ok=False):
    uses, _, guarded, _ = collect(source)
    return [str(u) for u in uses if not exists(api, u) and not (guarded_ok and u.member in guarded)]


# ---------------------------------------------------------------- signatures


def _split(text: str) -> list[str]:
    """Split a parameter list at top-level commas (defaults may hold brackets and commas)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


@dataclass
class Signature:
    text: str
    names: list[str]  # positional-or-keyword parameters, self excluded
    required: int  # how many of them have no default
    varargs: bool
    returns: str

    def accepts(self, positional: int, keywords: tuple) -> bool:
        if self.varargs:
            return True
        if positional > len(self.names):
            return False
        filled = set(self.names[:positional])
        for name in keywords:
            if name not in self.names or name in filled:
                return False
            filled.add(name)
        return all(name in filled for name in self.names[: self.required])


def parse_signature(text: str) -> Signature:
    match = re.match(r"^\w+\((.*)\)\s*(?:->\s*(.+))?$", text)
    params = _split(match.group(1)) if match else []
    names, required, varargs = [], 0, False
    for param in params:
        name = param.split(":")[0].split("=")[0].strip()
        if name.startswith("*"):
            varargs = True
            continue
        if name == "self":
            continue
        names.append(name)
        if "=" not in param.partition(":")[2] and "=" not in param.split(":")[0]:
            required = len(names)
    return Signature(text, names, required, varargs, (match.group(2) or "").strip() if match else "")


def signatures(api, key: str) -> list[Signature]:
    """The signatures of a member, without pybind's "(*args, **kwargs)" overload header."""
    parsed = [parse_signature(s) for s in api["members"].get(key, {}).get("signatures", [])]
    specific = [s for s in parsed if not (s.varargs and not s.names)]
    return specific or parsed


def kind_of(api, use: Use) -> str:
    if use.owner is None:
        if use.member in api["classes"]:
            return "class"
        if use.member in api["enums"]:
            return "enum"
        return api["members"].get(use.member, {}).get("kind", "function")
    if use.owner in api["enums"]:
        return "enum value"
    return api["members"].get(use.key, {}).get("kind", "unknown")


def misuses(source: str, api) -> list[str]:
    """Kind and argument mistakes of every TensorRT use in `source`."""
    uses, _, _, _ = collect(source)
    found = []
    for use in uses:
        if not exists(api, use):
            continue  # reported by the name check
        kind = kind_of(api, use)
        if use.context == "store" and kind != "property (read-write)":
            found.append(f"{use}: assigned, but it is a {kind}")
        elif use.context == "load" and kind == "method":
            found.append(f"{use}: read, but it is a method (call it)")
        elif use.context == "call":
            if kind == "class":
                key = f"{use.member}.__init__"
            elif kind in ("method", "static method", "function"):
                key = use.key
            else:
                found.append(f"{use}: called, but it is a {kind}")
                continue
            options = signatures(api, key)
            if options and not any(s.accepts(use.positional, use.keywords) for s in options):
                given = f"{use.positional} positional" + (
                    f", keywords {', '.join(use.keywords)}" if use.keywords else ""
                )
                found.append(f"{use}: called with {given}; TensorRT takes {' or '.join(s.text for s in options)}")
    return found


# ---------------------------------------------------------------- failure returns


def failure_signal(api, key: str) -> str | None:
    """How a member signals failure: "False", "None", "-1", or None when it can't."""
    if key in FAILURE_RETURNS:
        return FAILURE_RETURNS[key]
    options = signatures(api, key)
    if options and all(s.returns == "bool" for s in options):
        return "False"
    return None


def _mentions(test: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(test):
        if isinstance(target, ast.Name) and isinstance(node, ast.Name) and node.id == target.id:
            return True
        if (
            isinstance(target, ast.Attribute)
            and isinstance(node, ast.Attribute)
            and node.attr == target.attr
            and ast.dump(node.value) == ast.dump(target.value)
        ):
            return True
    return False


def _tests_in(scope: ast.AST):
    for node in ast.walk(scope):
        if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)):
            yield node.test
        elif isinstance(node, ast.Compare):
            yield node


def is_checked(call: ast.Call, parents) -> bool:
    """The call's result is tested: inside a condition or comparison, or assigned to a name that a
    later condition in the same function tests."""
    node = call
    while node in parents:
        parent = parents[node]
        if isinstance(parent, (ast.If, ast.While, ast.IfExp, ast.Assert)) and parent.test is node:
            return True
        if isinstance(parent, ast.Compare) or (isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.Not)):
            return True
        if isinstance(parent, (ast.Assign, ast.AnnAssign)) and parent.value is node:
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            if len(targets) != 1 or not isinstance(targets[0], (ast.Name, ast.Attribute)):
                return False
            scope = parent
            while scope in parents and not isinstance(scope, (ast.FunctionDef, ast.Module)):
                scope = parents[scope]
            return any(test.lineno > parent.lineno and _mentions(test, targets[0]) for test in _tests_in(scope))
        if isinstance(parent, (ast.stmt, ast.Call)):
            return False
        node = parent
    return False


def unchecked_failures(source: str, api) -> list[str]:
    uses, _, _, parents = collect(source)
    found = []
    for use in uses:
        if use.context != "call" or kind_of(api, use) == "class":
            continue
        signal = failure_signal(api, use.key)
        if signal is not None and not is_checked(use.node, parents):
            found.append(f"{use}: its result is not checked (it returns {signal} on failure)")
    return found


def callback_mismatches(source: str, api) -> list[str]:
    _, callbacks, _, _ = collect(source)
    found = []
    for callback in callbacks:
        options = signatures(api, f"{callback.base}.{callback.name}")
        if not options:
            found.append(f"line {callback.line}: {callback.base}.{callback.name} is not a TensorRT callback")
        elif not any(len(s.names) == callback.parameters for s in options):
            found.append(
                f"line {callback.line}: {callback.base}.{callback.name} takes {callback.parameters} arguments; "
                f"TensorRT passes {' or '.join(str(len(s.names)) for s in options)}"
            )
    return found


def foreign_loggers(source: str) -> list[str]:
    """Builders, Runtimes and OnnxParsers not given `shared_logger()` (directly or through a name
    assigned from it in the same function)."""
    uses, _, _, parents = collect(source)
    found = []
    for use in uses:
        if use.context != "call" or use.owner is not None or use.member not in LOGGER_TAKERS:
            continue
        call = use.node
        logger = call.args[-1] if call.args else None
        if isinstance(logger, ast.Call) and isinstance(logger.func, ast.Name) and logger.func.id == SHARED_LOGGER:
            continue
        scope = call
        while scope in parents and not isinstance(scope, (ast.FunctionDef, ast.Module)):
            scope = parents[scope]
        shared_names = {
            t.id
            for node in ast.walk(scope)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == SHARED_LOGGER
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        if not (isinstance(logger, ast.Name) and logger.id in shared_names):
            found.append(f"{use}: not given {SHARED_LOGGER}() (TensorRT keeps the first logger of the process)")
    return found


# ---------------------------------------------------------------- the product's code


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_name_exists_in_tensorrt_11_4(module):
    assert API_11["version"].startswith("11.4")
    assert missing_names(module.read_text(), API_11) == []


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_unguarded_name_exists_in_tensorrt_10_13(module):
    assert API_10["version"].startswith("10.13")
    assert missing_names(module.read_text(), API_10, guarded_ok=True) == []


@pytest.mark.parametrize("release", APIS)
@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_use_is_of_the_right_kind_with_fitting_arguments(module, release):
    assert misuses(module.read_text(), APIS[release]) == []


@pytest.mark.parametrize("release", APIS)
@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_every_failure_return_is_checked(module, release):
    assert unchecked_failures(module.read_text(), APIS[release]) == []


@pytest.mark.parametrize("release", APIS)
@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_callbacks_take_what_tensorrt_passes(module, release):
    assert callback_mismatches(module.read_text(), APIS[release]) == []


def test_the_runtime_uses_only_what_the_lean_runtime_has():
    """Where only `tensorrt_lean` is installed, `deploy.runtimes.tensorrt` runs engines with it: every
    name it uses outside the functions that build (none here) exists in the lean bindings, of the
    right kind, with fitting arguments, failures checked."""
    assert API_LEAN["version"].startswith("11.4") and "Builder" not in API_LEAN["classes"]
    source = RUNTIME_MODULE.read_text()
    assert missing_names(source, API_LEAN) == []
    assert misuses(source, API_LEAN) == [] and unchecked_failures(source, API_LEAN) == []
    assert callback_mismatches(source, API_LEAN) == []


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_one_logger_for_the_process(module):
    assert foreign_loggers(module.read_text()) == []


def test_the_check_sees_the_calls_that_matter():
    uses, callbacks = set(), set()
    for module in MODULES:
        found, hooks, _, _ = collect(module.read_text())
        uses |= {(u.owner, u.member) for u in found}
        callbacks |= {(c.base, c.name) for c in hooks}
    expected = {
        ("IExecutionContext", "execute_async_v3"),
        ("IExecutionContext", "set_input_shape"),
        ("IExecutionContext", "set_tensor_address"),
        ("ICudaEngine", "get_tensor_profile_shape"),
        ("ICudaEngine", "create_execution_context"),
        ("Runtime", "deserialize_cuda_engine"),
        ("Builder", "build_serialized_network"),
        ("Builder", "create_network"),
        ("IBuilderConfig", "set_memory_pool_limit"),
        ("IBuilderConfig", "builder_optimization_level"),
        ("IBuilderConfig", "progress_monitor"),
        ("IBuilderConfig", "set_timing_cache"),
        ("IBuilderConfig", "get_timing_cache"),
        ("IBuilderConfig", "create_timing_cache"),
        ("IBuilderConfig", "add_optimization_profile"),
        ("IOptimizationProfile", "set_shape"),
        ("OnnxParser", "parse_from_file"),
        ("ParserError", "node_name"),
        ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        ("BuilderFlag", "TF32"),
        ("ITimingCache", "serialize"),
        (None, "nptype"),
        (None, "Builder"),
        (None, "Runtime"),
        ("ILogger", "__init__"),
        ("IProgressMonitor", "__init__"),
    }
    assert expected <= uses, expected - uses
    assert {
        ("ILogger", "log"),
        ("IProgressMonitor", "phase_start"),
        ("IProgressMonitor", "step_complete"),
        ("IProgressMonitor", "phase_finish"),
    } <= callbacks
    assert len(uses) >= 45
    checked = [u for u in uses if u[0] and failure_signal(API_11, f"{u[0]}.{u[1]}")]
    assert len(checked) >= 10  # the failure-return check has something to check


def test_signatures_are_parsed():
    s = parse_signature(
        "set_timing_cache(self: tensorrt.IBuilderConfig, cache: tensorrt.ITimingCache, ignore_mismatch: bool) -> bool"
    )
    assert (s.names, s.required, s.returns) == (["cache", "ignore_mismatch"], 2, "bool")
    s = parse_signature(
        "create_execution_context(self: X, strategy: tensorrt.S = <S.STATIC: 0>) -> tensorrt.IExecutionContext"
    )
    assert (s.names, s.required) == (["strategy"], 0) and s.accepts(0, ()) and s.accepts(0, ("strategy",))
    assert not s.accepts(2, ())


# ---------------------------------------------------------------- planted defects are caught


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


@pytest.mark.parametrize("release", APIS)
def test_the_check_catches_each_ignored_failure_return(release):
    snippet = (
        "def run(self, trt, stream):\n"
        "    self.context.execute_async_v3(stream)\n"  # the warm-up run, unchecked
        "    with capture(graph):\n"
        "        self.context.execute_async_v3(stream)\n"  # inside a CUDA-graph capture, unchecked
        "def cache(config, data):\n"
        "    cache = config.create_timing_cache(data)\n"  # None for a damaged file
        "    config.set_timing_cache(cache, False)\n"  # False for another device's cache
        "    return config.get_timing_cache().serialize()\n"  # None when no cache is attached
        "def load(self):\n"
        "    self.context = self.engine.create_execution_context()\n"  # None when memory runs out
        "    self.context.set_tensor_address('input', 0)\n"
        "    config.add_optimization_profile(profile)\n"  # -1 when refused
        "    engine = self.trt_runtime.deserialize_cuda_engine(b'')\n"
        "    return engine\n"
    )
    assert unchecked_failures(snippet, APIS[release]) == [
        "line 2: trt.IExecutionContext.execute_async_v3: its result is not checked (it returns False on failure)",
        "line 4: trt.IExecutionContext.execute_async_v3: its result is not checked (it returns False on failure)",
        "line 6: trt.IBuilderConfig.create_timing_cache: its result is not checked (it returns None on failure)",
        "line 7: trt.IBuilderConfig.set_timing_cache: its result is not checked (it returns False on failure)",
        "line 8: trt.IBuilderConfig.get_timing_cache: its result is not checked (it returns None on failure)",
        "line 10: trt.ICudaEngine.create_execution_context: its result is not checked (it returns None on failure)",
        "line 11: trt.IExecutionContext.set_tensor_address: its result is not checked (it returns False on failure)",
        "line 12: trt.IBuilderConfig.add_optimization_profile: its result is not checked (it returns -1 on failure)",
        "line 13: trt.Runtime.deserialize_cuda_engine: its result is not checked (it returns None on failure)",
    ]
    fixed = (
        "def run(self, stream):\n"
        "    if not self.context.execute_async_v3(stream):\n"
        "        raise RuntimeError\n"
        "    with capture(graph):\n"
        "        captured = self.context.execute_async_v3(stream)\n"
        "    if not captured:\n"
        "        raise RuntimeError\n"
        "    engine = self.trt_runtime.deserialize_cuda_engine(b'')\n"
        "    if engine is None:\n"
        "        raise RuntimeError\n"
        "    if config.add_optimization_profile(profile) < 0:\n"
        "        raise RuntimeError\n"
    )
    assert unchecked_failures(fixed, APIS[release]) == []


@pytest.mark.parametrize("release", APIS)
def test_the_check_catches_wrong_kinds_and_arguments(release):
    snippet = (
        "def f(trt, parser, engine, config, context, cache):\n"
        "    engine.num_io_tensors = 3\n"  # a read-only property, assigned
        "    n = parser.num_errors()\n"  # a property, called
        "    ok = config.set_timing_cache(cache)\n"  # ignore_mismatch missing
        "    ok = context.set_input_shape('input', shape=(1, 3), strict=True)\n"  # no such keyword
        "    b = trt.Builder()\n"  # the constructor takes a logger
        "    m = engine.get_tensor_name\n"  # a method, read
        "    config.builder_optimization_level = 3\n"  # fine: read-write
    )
    found = misuses(snippet, APIS[release])
    assert [line.split(":")[0] + ":" + line.split(":")[1] for line in found] == [
        "line 2: trt.ICudaEngine.num_io_tensors",
        "line 3: trt.OnnxParser.num_errors",
        "line 4: trt.IBuilderConfig.set_timing_cache",
        "line 5: trt.IExecutionContext.set_input_shape",
        "line 6: trt.Builder",
        "line 7: trt.ICudaEngine.get_tensor_name",
    ]
    assert (
        "assigned, but it is a property (read-only)" in found[0]
        and "called, but it is a property (read-only)" in found[1]
    )
    assert "ignore_mismatch: bool" in found[2] and "read, but it is a method" in found[5]


@pytest.mark.parametrize("release", APIS)
def test_the_check_catches_callbacks_of_the_wrong_shape(release):
    snippet = (
        "class L(trt.ILogger):\n"
        "    def log(self, message):\n"
        "        pass\n"
        "class M(trt.IProgressMonitor):\n"
        "    def step_done(self, phase, step):\n"
        "        return True\n"
    )
    assert callback_mismatches(snippet, APIS[release]) == [
        "line 2: ILogger.log takes 1 arguments; TensorRT passes 2",
        "line 5: IProgressMonitor.step_done is not a TensorRT callback",
    ]


def test_the_check_catches_a_logger_per_object():
    snippet = (
        "def load(trt, data):\n"
        "    trt_runtime = trt.Runtime(make_logger(trt))\n"
        "def build(trt):\n"
        "    logger = shared_logger()\n"
        "    builder = trt.Builder(logger)\n"
        "    parser = trt.OnnxParser(network, KeepingLogger())\n"
    )
    assert foreign_loggers(snippet) == [
        "line 2: trt.Runtime: not given shared_logger() (TensorRT keeps the first logger of the process)",
        "line 6: trt.OnnxParser: not given shared_logger() (TensorRT keeps the first logger of the process)",
    ]
