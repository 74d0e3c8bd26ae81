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
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
    file's own resnet-export metadata, when present) gives the expected Option A block count.
    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = model.graph
    violations: list[Violation] = []
    add = lambda rule, node, message: violations.append(Violation(rule, node, message))  # noqa: E731

    domains = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    declared = domains.get("ai.onnx")
    if opset is not None and declared != opset:
        add("opset", "(graph)", f"declares default-domain opset {declared}, expected {opset}")
    for domain in sorted(set(domains) - {"ai.onnx"}):
        add("opset", "(graph)", f"imports the non-standard domain {domain!r}")

    initializers = {t.name for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input} - initializers
    graph_outputs = {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    is_fp16 = any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer)

    for index, node in enumerate(graph.node):
        label = _node_label(node, index)
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            add("allowed-ops", label, f"{node.domain}::{op} is a custom-domain op")
        elif op == "BatchNormalization":
            add("batchnorm-folded", label, "BatchNormalization is not folded into the preceding Conv")
        elif op not in ALLOWED_OPS:
            add("allowed-ops", label, f"{op} is not allowed (allowed: {', '.join(sorted(ALLOWED_OPS))})")
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
            if not any(c.op_type == "Pad" for c in consumers.get(node.output[0], [])):
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
            source = producers.get(node.input[0])
            if source is not None and source.op_type not in ("Slice", "Relu", "MaxPool"):
                add("option-a", label, f"Pad reads a {source.op_type}, expected a Slice or a block input")
            if not any(c.op_type == "Add" for c in consumers.get(node.output[0], [])):
                add("option-a", label, "Pad does not feed an Add (the residual sum)")

    op_counts = dict(Counter(n.op_type for n in graph.node).most_common())
    if info is None:
        props = {p.key: p.value for p in model.metadata_props}
        info = ModelInfo.from_metadata(props) if "model_name" in props else None
    architecture = info.to_architecture() if info is not None else None
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
    return LintReport(opset=declared, op_counts=op_counts, violations=violations)


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
