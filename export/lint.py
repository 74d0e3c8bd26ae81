"""The graph contract: what every exported ResNet must look like, checked on any ONNX file.

Rules (each violation names the node and the rule):

- `allowed-ops`: only Conv, Relu, Add, MaxPool, GlobalAveragePool or ReduceMean, Flatten or
  Reshape, Gemm, Slice, Pad, and Cast. In particular no Identity, Shape, Gather, Unsqueeze,
  ConstantOfShape, Expand, Concat, Constant: nothing computed from run-time shapes.
- `batchnorm-folded`: no BatchNormalization; it belongs inside the preceding Conv.
- `cast-at-edges`: a Cast only in an FP16 graph, reading the graph input or writing the output.
- `constant-slice`: every Slice's starts/ends/axes/steps are initializers.
- `constant-pad`: every Pad's pads (and constant value) are initializers, mode "constant".
- `option-a`: every Pad reads a Slice or a block input and feeds an Add; every Slice feeds a
  Pad. With the model's metadata: exactly one Pad per Option A block whose shortcut is not the
  identity, and one Slice per such block that changes resolution.
- `opset`: the default-domain opset is the one expected; no other domains.
- `onnx-checker`: `onnx.checker.check_model(full_check=True)` passes.

An INT8 graph (precision "int8" in its metadata, or any QuantizeLinear in a file without ours)
may also hold QuantizeLinear and DequantizeLinear (Q/DQ), and meets two more rules; the
rules above look through Q/DQ pairs when they follow a tensor from node to node.

- `int8-placement`: every QuantizeLinear feeds only DequantizeLinear nodes (explicit Q/DQ
  pairs); every convolution and the classifier read their input and their weights through a
  DequantizeLinear. For the "tensorrt" target (TensorRT's explicit quantization) also: both
  inputs of every residual Add come through a DequantizeLinear, biases stay float, and Q/DQ
  appear nowhere else (a dequantized tensor feeds only Conv, Gemm, Add, or Option A's Slice/Pad).
  Layers the metadata's quantization record keeps in float (`float_nodes`, from `--keep-float`)
  are exempt from the convolution, classifier and Add requirements.
- `int8-params`: every scale is an initializer with positive, finite values; every zero point
  an initializer of the target's type (int8 for "tensorrt"; for "cpu", uint8 activations and
  int8 weights), and 0 wherever the quantization is symmetric (weights, biases, and all of
  "tensorrt").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from deploy.artifacts.metadata import ModelInfo
from deploy.artifacts.onnx_file import SCALE_RANGE
from toolkit.errors import ToolkitError, clip
from toolkit.files import input_file

ALLOWED_OPS = frozenset(
    {
        "Conv",
        "Relu",
        "Add",
        "MaxPool",
        "GlobalAveragePool",
        "ReduceMean",
        "Flatten",
        "Reshape",
        "Gemm",
        "Slice",
        "Pad",
        "Cast",
    }
)
QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
# What a dequantized tensor may feed in TensorRT's explicit-quantization form.
TENSORRT_DQ_CONSUMERS = frozenset({"Conv", "Gemm", "Add", "Slice", "Pad"})


@dataclass(frozen=True)
class Violation:
    rule: str
    node: str  # node name ("(graph)" for whole-graph rules)
    message: str

    def __str__(self) -> str:
        return f"{self.node}: {self.message} [{self.rule}]"


@dataclass
class LintReport:
    """Result of `lint_onnx`: op counts and the violations found (none means the contract holds)."""

    opset: int | None
    op_counts: dict[str, int]
    violations: list[Violation] = field(default_factory=list)
    rules: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "opset": self.opset,
            "rules": list(self.rules),
            "op_counts": self.op_counts,
            "violations": [asdict(v) for v in self.violations],
        }


class GraphContractError(ToolkitError):
    """An ONNX graph that breaks the contract; `.report` holds every violation."""

    def __init__(self, report: LintReport, source: str = "graph") -> None:
        self.report = report
        shown = "; ".join(str(v) for v in report.violations[:3])
        more = f" (and {len(report.violations) - 3} more)" if len(report.violations) > 3 else ""
        super().__init__(f"{source} breaks the graph contract: {shown}{more}")


class Graph:
    """What the rules read: the model, its nodes (with their labels), who makes and who reads each
    tensor, the initializers, the graph's inputs and outputs, its metadata and its kind (FP16,
    INT8 and the INT8 target). `producer` and `users` look through Q/DQ pairs."""

    def __init__(self, model: onnx.ModelProto, opset: int | None, info: ModelInfo | None) -> None:
        graph = model.graph
        self.model, self.expected_opset, self.info = model, opset, info
        self.nodes = [(node.name or f"{node.op_type}#{index}", node) for index, node in enumerate(graph.node)]
        self.initializers = {t.name: t for t in graph.initializer}
        self.inputs = {i.name for i in graph.input} - set(self.initializers)
        self.outputs = {o.name for o in graph.output}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.fp16 = any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer)
        self.int8 = (info.precision == "int8") if info is not None else any(n.op_type in QDQ for n in graph.node)
        self.target = info.quantization.get("target") if info is not None and self.int8 else None
        self.float_nodes = set(info.quantization.get("float_nodes", [])) if info is not None and self.int8 else set()

    def of(self, *ops: str):
        """(label, node) of the default-domain nodes with these op types."""
        return [(label, n) for label, n in self.nodes if n.op_type in ops and n.domain in ("", "ai.onnx")]

    def producer(self, name: str):
        """The node that makes `name`, looking through Q/DQ pairs."""
        node = self.producers.get(name)
        while node is not None and node.op_type in QDQ:
            node = self.producers.get(node.input[0])
        return node

    def users(self, name: str) -> list[onnx.NodeProto]:
        """The nodes that read `name`, looking through Q/DQ pairs."""
        found = []
        for node in self.consumers.get(name, []):
            found += self.users(node.output[0]) if node.op_type in QDQ else [node]
        return found

    def dequantized(self, name: str) -> bool:
        node = self.producers.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    def computed(self, node: onnx.NodeProto, roles: tuple[str, ...]):
        """(role, input name) of the inputs after the first that are given but not initializers."""
        return [
            (role, node.input[position])
            for position, role in enumerate(roles, start=1)
            if position < len(node.input) and node.input[position] and node.input[position] not in self.initializers
        ]


Found = Iterator[tuple[str, str]]  # (node label, message) of each violation a rule finds


def _allowed_ops(g: Graph) -> Found:
    allowed = ", ".join(sorted(ALLOWED_OPS | QDQ))
    for label, node in g.nodes:
        if node.domain not in ("", "ai.onnx"):
            yield label, f"{node.domain}::{node.op_type} is a custom-domain op"
        elif node.op_type in QDQ and not g.int8:
            yield label, f"{node.op_type} in a graph that is not INT8"
        elif node.op_type not in ALLOWED_OPS | QDQ | {"BatchNormalization"}:
            yield label, f"{node.op_type} is not allowed (allowed: {allowed})"


def _batchnorm_folded(g: Graph) -> Found:
    for label, _ in g.of("BatchNormalization"):
        yield label, "BatchNormalization is not folded into the preceding Conv"


def _cast_at_edges(g: Graph) -> Found:
    for label, node in g.of("Cast"):
        if not g.fp16:
            yield label, "Cast in a graph that is not FP16"
        elif node.input[0] not in g.inputs and node.output[0] not in g.outputs:
            yield label, "Cast inside the graph (allowed only on the graph input or output)"


def _constant_slice(g: Graph) -> Found:
    for label, node in g.of("Slice"):
        for role, name in g.computed(node, ("starts", "ends", "axes", "steps")):
            yield label, f"Slice {role} ({name}) is computed, not an initializer"
        if len(node.input) < 3:
            yield label, "Slice without starts/ends inputs (opset < 10 form)"


def _constant_pad(g: Graph) -> Found:
    for label, node in g.of("Pad"):
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
        if mode != "constant":
            yield label, f"Pad mode is {mode!r}, expected 'constant'"
        if len(node.input) < 2:
            yield label, "Pad takes its pads as an attribute (opset < 11 form)"
        for role, name in g.computed(node, ("pads", "constant_value", "axes")):
            yield label, f"Pad {role} ({name}) is computed, not an initializer"


def _option_a(g: Graph) -> Found:
    for label, node in g.of("Slice"):
        if not any(c.op_type == "Pad" for c in g.users(node.output[0])):
            yield label, "Slice does not feed a Pad (Option A is one Slice then one Pad)"
    for label, node in g.of("Pad"):
        source = g.producer(node.input[0])
        if source is not None and source.op_type not in ("Slice", "Relu", "MaxPool", "Add", "Conv"):
            yield label, f"Pad reads a {source.op_type}, expected a Slice or a block input"
        if not any(c.op_type == "Add" for c in g.users(node.output[0])):
            yield label, "Pad does not feed an Add (the residual sum)"
    if g.info is None:
        return
    expected = g.info.architecture.shortcut_blocks()
    pads = len(expected) if g.info.shortcut == "A" else 0
    slices = sum(1 for _, stride, _, _ in expected if stride != 1) if g.info.shortcut == "A" else 0
    counts = Counter(n.op_type for _, n in g.nodes)
    for op, count in (("Pad", pads), ("Slice", slices)):
        if counts.get(op, 0) != count:
            yield (
                "(graph)",
                f"{counts.get(op, 0)} {op} nodes; {g.info.name} with shortcut {g.info.shortcut} has {count}",
            )


def _opset(g: Graph) -> Found:
    domains = {o.domain or "ai.onnx": o.version for o in g.model.opset_import}
    declared = domains.get("ai.onnx")
    if g.expected_opset is not None and declared != g.expected_opset:
        yield "(graph)", f"declares default-domain opset {declared}, expected {g.expected_opset}"
    for domain in sorted(set(domains) - {"ai.onnx"}):
        if domain != "ai.onnx.ml" or any(n.domain == domain for _, n in g.nodes):
            yield "(graph)", f"imports the non-standard domain {domain!r}"


def _onnx_checker(g: Graph) -> Found:
    try:
        onnx.checker.check_model(g.model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        yield "(graph)", str(error).strip().splitlines()[0][:300]


def _int8_placement(g: Graph) -> Found:
    for label, node in g.of("QuantizeLinear"):
        readers = g.consumers.get(node.output[0], [])
        if not readers or any(r.op_type != "DequantizeLinear" for r in readers):
            yield label, "QuantizeLinear must feed DequantizeLinear nodes only (explicit Q/DQ pairs)"
    for label, node in g.of("DequantizeLinear"):
        source = g.producers.get(node.input[0])
        if source is None and node.input[0] not in g.initializers:
            yield label, "DequantizeLinear reads neither a QuantizeLinear nor a quantized initializer"
        elif source is not None and source.op_type != "QuantizeLinear":
            yield label, f"DequantizeLinear reads a {source.op_type}, expected a QuantizeLinear"
        odd = sorted({c.op_type for c in g.consumers.get(node.output[0], [])} - TENSORRT_DQ_CONSUMERS)
        if g.target == "tensorrt" and odd:
            yield (
                label,
                (
                    f"a dequantized tensor feeds {', '.join(odd)}; TensorRT's form puts Q/DQ only before Conv, Gemm and "
                    "the residual Add"
                ),
            )
    for label, node in g.of("Conv", "Gemm"):
        if node.name in g.float_nodes:
            continue
        for position, role in ((0, "input"), (1, "weights")):
            if not g.dequantized(node.input[position]):
                yield label, f"{node.op_type} {role} ({node.input[position]}) is not dequantized (no Q/DQ)"
        if g.target == "tensorrt" and len(node.input) > 2 and node.input[2] and g.dequantized(node.input[2]):
            yield label, f"{node.op_type} bias is quantized; TensorRT's form keeps biases float"
    for label, node in g.of("Add") if g.target == "tensorrt" else []:
        if node.name not in g.float_nodes and not all(g.dequantized(name) for name in node.input):
            yield label, "a residual Add input is not dequantized; TensorRT's form quantizes both"


def _int8_params(g: Graph) -> Found:
    for label, node in g.of(*QDQ):
        scale = g.initializers.get(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            yield label, f"{node.op_type} scale is not an initializer"
        elif (
            not np.isfinite(values := numpy_helper.to_array(scale)).all()
            or not ((values >= SCALE_RANGE[0]) & (values <= SCALE_RANGE[1])).all()
        ):
            yield (
                label,
                f"{node.op_type} scale {scale.name} has values that are not finite or not from {SCALE_RANGE[0]:g} to "
                f"{SCALE_RANGE[1]:g}",
            )
        if len(node.input) > 2 and node.input[2]:
            zero = g.initializers.get(node.input[2])
            if zero is None:
                yield label, f"{node.op_type} zero point is not an initializer"
            else:
                yield from ((label, message) for message in _zero_point_problems(g, node, zero))


def _zero_point_problems(g: Graph, node: onnx.NodeProto, zero: onnx.TensorProto) -> list[str]:
    """What is wrong with a Q/DQ node's zero point for the target's form (see the module docstring)."""
    points = numpy_helper.to_array(zero)
    weight = node.op_type == "DequantizeLinear" and node.input[0] in g.initializers
    kind = zero.data_type
    if kind == TensorProto.INT32:
        return [] if weight and not (points != 0).any() else ["an int32 zero point must be 0, on a quantized bias"]
    symmetric = g.target == "tensorrt" or weight
    expected = TensorProto.INT8 if symmetric else (TensorProto.UINT8 if g.target == "cpu" else kind)
    problems = []
    if kind not in (TensorProto.INT8, TensorProto.UINT8) or kind != expected:
        problems.append(
            f"zero point {zero.name} is {TensorProto.DataType.Name(kind).lower()}, "
            f"expected {TensorProto.DataType.Name(expected).lower()} for the {g.target or 'file'}'s form"
        )
    if symmetric and (points != 0).any():
        problems.append(f"zero point {zero.name} is not 0 (the quantization is symmetric)")
    return problems


# The contract, one function per rule, in the order they are checked and reported.
RULES: dict[str, Callable[[Graph], Found]] = {
    "allowed-ops": _allowed_ops,
    "batchnorm-folded": _batchnorm_folded,
    "cast-at-edges": _cast_at_edges,
    "constant-slice": _constant_slice,
    "constant-pad": _constant_pad,
    "option-a": _option_a,
    "opset": _opset,
    "onnx-checker": _onnx_checker,
}
INT8_RULES: dict[str, Callable[[Graph], Found]] = {"int8-placement": _int8_placement, "int8-params": _int8_params}


def lint_onnx(
    model: onnx.ModelProto | str | Path, *, opset: int | None = None, info: ModelInfo | None = None
) -> LintReport:
    """Check an ONNX model against the contract; returns every violation, raises nothing.

    `opset`, when given, is the default-domain opset the file must declare. `info` (default: the
    file's own resnet-export metadata, when present) gives the expected Option A block count,
    the precision and, for INT8, the quantization target. Every rule of `RULES` runs (and of
    `INT8_RULES` on an INT8 graph); violations are listed rule by rule, each rule's in node order.
    """
    if not isinstance(model, onnx.ModelProto):
        model = _load(model)
    if info is None:
        props = {p.key: p.value for p in model.metadata_props}
        info = ModelInfo.from_metadata(props) if "model_name" in props else None
    g = Graph(model, opset, info)
    rules = RULES | (INT8_RULES if g.int8 else {})
    violations = [Violation(name, label, message) for name, check in rules.items() for label, message in check(g)]
    domains = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    op_counts = dict(Counter(n.op_type for n in model.graph.node).most_common())
    return LintReport(opset=domains.get("ai.onnx"), op_counts=op_counts, violations=violations, rules=tuple(rules))


def _load(path) -> onnx.ModelProto:
    """An ONNX file, or one sentence: missing, a folder, or not ONNX at all."""
    path = input_file(path, "ONNX file", "an ONNX file", ToolkitError)
    try:
        return onnx.load(str(path))
    except Exception as error:  # noqa: BLE001 - protobuf raises several types on a foreign file
        first = clip(error, 120) if str(error) else type(error).__name__
        raise ToolkitError(f"{path} is not a readable ONNX file ({first})") from None


def check_onnx(
    model: onnx.ModelProto | str | Path,
    *,
    opset: int | None = None,
    info: ModelInfo | None = None,
    source: str = "graph",
) -> LintReport:
    """`lint_onnx`, raising `GraphContractError` when anything is violated."""
    report = lint_onnx(model, opset=opset, info=info)
    if not report.passed:
        raise GraphContractError(report, source)
    return report
