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
- `int8-params`: every scale is an initializer with positive, finite values; every zero point
  an initializer of the target's type (int8 for "tensorrt"; for "cpu", uint8 activations and
  int8 weights), and 0 wherever the quantization is symmetric (weights, biases, and all of
  "tensorrt").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from deploy.artifacts.metadata import ModelInfo
from toolkit.errors import ToolkitError

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
RULES = (
    "allowed-ops",
    "batchnorm-folded",
    "cast-at-edges",
    "constant-slice",
    "constant-pad",
    "option-a",
    "opset",
    "onnx-checker",
)
INT8_RULES = ("int8-placement", "int8-params")
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
    rules: tuple[str, ...] = RULES

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


def _node_label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def lint_onnx(
    model: onnx.ModelProto | str | Path, *, opset: int | None = None, info: ModelInfo | None = None
) -> LintReport:
    """Check an ONNX model against the contract; returns every violation, raises nothing.

    `opset`, when given, is the default-domain opset the file must declare. `info` (default: the
    file's own resnet-export metadata, when present) gives the expected Option A block count,
    the precision and, for INT8, the quantization target.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = model.graph
    violations: list[Violation] = []
    add = lambda rule, node, message: violations.append(Violation(rule, node, message))  # noqa: E731
    if info is None:
        props = {p.key: p.value for p in model.metadata_props}
        info = ModelInfo.from_metadata(props) if "model_name" in props else None

    domains = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    declared = domains.get("ai.onnx")
    if opset is not None and declared != opset:
        add("opset", "(graph)", f"declares default-domain opset {declared}, expected {opset}")
    for domain in sorted(set(domains) - {"ai.onnx"}):
        if domain != "ai.onnx.ml" or any(n.domain == domain for n in graph.node):
            add("opset", "(graph)", f"imports the non-standard domain {domain!r}")

    initializers = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input} - set(initializers)
    graph_outputs = {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    is_fp16 = any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer)
    has_qdq = any(n.op_type in QDQ for n in graph.node)
    is_int8 = (info.precision == "int8") if info is not None else has_qdq
    target = info.quantization.get("target") if info is not None and is_int8 else None

    def producer(name: str):
        """The node that makes `name`, looking through Q/DQ pairs."""
        node = producers.get(name)
        while node is not None and node.op_type in QDQ:
            node = producers.get(node.input[0])
        return node

    def users(name: str) -> list[onnx.NodeProto]:
        """The nodes that read `name`, looking through Q/DQ pairs."""
        found = []
        for node in consumers.get(name, []):
            found += users(node.output[0]) if node.op_type in QDQ else [node]
        return found

    for index, node in enumerate(graph.node):
        label = _node_label(node, index)
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            add("allowed-ops", label, f"{node.domain}::{op} is a custom-domain op")
        elif op == "BatchNormalization":
            add("batchnorm-folded", label, "BatchNormalization is not folded into the preceding Conv")
        elif op in QDQ:
            if not is_int8:
                add("allowed-ops", label, f"{op} in a graph that is not INT8")
        elif op not in ALLOWED_OPS:
            add("allowed-ops", label, f"{op} is not allowed (allowed: {', '.join(sorted(ALLOWED_OPS | QDQ))})")
        elif op == "Cast":
            at_edge = node.input[0] in graph_inputs or node.output[0] in graph_outputs
            if not is_fp16:
                add("cast-at-edges", label, "Cast in a graph that is not FP16")
            elif not at_edge:
                add("cast-at-edges", label, "Cast inside the graph (allowed only on the graph input or output)")
        elif op == "Slice":
            for position, role in enumerate(("starts", "ends", "axes", "steps"), start=1):
                if position < len(node.input) and node.input[position] and node.input[position] not in initializers:
                    add(
                        "constant-slice",
                        label,
                        f"Slice {role} ({node.input[position]}) is computed, not an initializer",
                    )
            if len(node.input) < 3:
                add("constant-slice", label, "Slice without starts/ends inputs (opset < 10 form)")
            if not any(c.op_type == "Pad" for c in users(node.output[0])):
                add("option-a", label, "Slice does not feed a Pad (Option A is one Slice then one Pad)")
        elif op == "Pad":
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
            if mode != "constant":
                add("constant-pad", label, f"Pad mode is {mode!r}, expected 'constant'")
            if len(node.input) < 2:
                add("constant-pad", label, "Pad takes its pads as an attribute (opset < 11 form)")
            for position, role in enumerate(("pads", "constant_value", "axes"), start=1):
                if position < len(node.input) and node.input[position] and node.input[position] not in initializers:
                    add("constant-pad", label, f"Pad {role} ({node.input[position]}) is computed, not an initializer")
            source = producer(node.input[0])
            if source is not None and source.op_type not in ("Slice", "Relu", "MaxPool", "Add", "Conv"):
                add("option-a", label, f"Pad reads a {source.op_type}, expected a Slice or a block input")
            if not any(c.op_type == "Add" for c in users(node.output[0])):
                add("option-a", label, "Pad does not feed an Add (the residual sum)")
    if is_int8:
        _int8_rules(graph, target, initializers, producers, consumers, add)

    op_counts = dict(Counter(n.op_type for n in graph.node).most_common())
    architecture = info.architecture if info is not None else None
    if architecture is not None:
        expected = architecture.shortcut_blocks()
        if info.shortcut == "A":
            pads, slices = len(expected), sum(1 for _, stride, _, _ in expected if stride != 1)
        else:
            pads = slices = 0
        for op, count in (("Pad", pads), ("Slice", slices)):
            if op_counts.get(op, 0) != count:
                add(
                    "option-a",
                    "(graph)",
                    f"{op_counts.get(op, 0)} {op} nodes; {info.name} with shortcut {info.shortcut} has {count}",
                )

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        add("onnx-checker", "(graph)", str(error).strip().splitlines()[0][:300])
    rules = RULES + (INT8_RULES if is_int8 else ())
    return LintReport(opset=declared, op_counts=op_counts, violations=violations, rules=rules)


def _int8_rules(graph, target: str | None, initializers: dict, producers: dict, consumers: dict, add) -> None:
    """`int8-placement` and `int8-params` (see the module docstring)."""
    from onnx import numpy_helper

    def dequantized(name: str) -> bool:
        node = producers.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    for index, node in enumerate(graph.node):
        label = _node_label(node, index)
        if node.op_type == "QuantizeLinear":
            readers = consumers.get(node.output[0], [])
            if not readers or any(r.op_type != "DequantizeLinear" for r in readers):
                add(
                    "int8-placement",
                    label,
                    "QuantizeLinear must feed DequantizeLinear nodes only (explicit Q/DQ pairs)",
                )
        if node.op_type == "DequantizeLinear":
            source = producers.get(node.input[0])
            if source is None and node.input[0] not in initializers:
                add(
                    "int8-placement",
                    label,
                    "DequantizeLinear reads neither a QuantizeLinear nor a quantized initializer",
                )
            elif source is not None and source.op_type != "QuantizeLinear":
                add("int8-placement", label, f"DequantizeLinear reads a {source.op_type}, expected a QuantizeLinear")
            if target == "tensorrt":
                odd = sorted({c.op_type for c in consumers.get(node.output[0], [])} - TENSORRT_DQ_CONSUMERS)
                if odd:
                    add(
                        "int8-placement",
                        label,
                        f"a dequantized tensor feeds {', '.join(odd)}; TensorRT's form puts "
                        "Q/DQ only before Conv, Gemm and the residual Add",
                    )
        if node.op_type in ("Conv", "Gemm"):
            for position, role in ((0, "input"), (1, "weights")):
                if not dequantized(node.input[position]):
                    add(
                        "int8-placement",
                        label,
                        f"{node.op_type} {role} ({node.input[position]}) is not dequantized (no Q/DQ)",
                    )
            if target == "tensorrt" and len(node.input) > 2 and node.input[2] and dequantized(node.input[2]):
                add("int8-placement", label, f"{node.op_type} bias is quantized; TensorRT's form keeps biases float")
        if node.op_type == "Add" and target == "tensorrt":
            if not all(dequantized(name) for name in node.input):
                add("int8-placement", label, "a residual Add input is not dequantized; TensorRT's form quantizes both")

        if node.op_type not in QDQ:
            continue
        scale = initializers.get(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            add("int8-params", label, f"{node.op_type} scale is not an initializer")
        else:
            values = numpy_helper.to_array(scale)
            if not np.isfinite(values).all() or (values <= 0).any():
                add(
                    "int8-params",
                    label,
                    f"{node.op_type} scale {scale.name} has values that are not positive and finite",
                )
        zero = initializers.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is None:
            if len(node.input) > 2 and node.input[2]:
                add("int8-params", label, f"{node.op_type} zero point is not an initializer")
            continue
        points = numpy_helper.to_array(zero)
        weight = node.op_type == "DequantizeLinear" and node.input[0] in initializers
        kind = zero.data_type
        if kind == TensorProto.INT32:
            if not weight or (points != 0).any():
                add("int8-params", label, "an int32 zero point must be 0, on a quantized bias")
            continue
        expected = (
            TensorProto.INT8 if (target == "tensorrt" or weight) else (TensorProto.UINT8 if target == "cpu" else kind)
        )
        if kind not in (TensorProto.INT8, TensorProto.UINT8) or kind != expected:
            add(
                "int8-params",
                label,
                f"zero point {zero.name} is {TensorProto.DataType.Name(kind).lower()}, "
                f"expected {TensorProto.DataType.Name(expected).lower()} for the {target or 'file'}'s form",
            )
        if (target == "tensorrt" or weight) and (points != 0).any():
            add("int8-params", label, f"zero point {zero.name} is not 0 (the quantization is symmetric)")


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
