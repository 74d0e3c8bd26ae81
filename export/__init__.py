"""Making artifacts: ONNX at an exact opset (FP32, FP16, INT8), the graph lint, validation, TensorRT engines.

Imports `toolkit`, `resnet` and `deploy` (docs/design.md); validation runs the artifacts through
`deploy.runtimes`, so what is validated is what ships.
"""

from .engine import BuildOptions, BuildReport, EngineBuildError, build_engine, resolve_batches
from .lint import GraphContractError, LintReport, Violation, check_onnx, lint_onnx
from .onnx_export import ExportReport, default_output, export_onnx
from .onnx_graph import DEFAULT_OPSET, SUPPORTED_OPSETS, ExportError, fold_batchnorm, resnet_to_onnx
from .validate import Thresholds, ValidationFailed, ValidationReport, compare_logits, validate_runtime

__all__ = [
    "BuildOptions",
    "BuildReport",
    "EngineBuildError",
    "build_engine",
    "resolve_batches",
    "DEFAULT_OPSET",
    "ExportError",
    "ExportReport",
    "GraphContractError",
    "LintReport",
    "SUPPORTED_OPSETS",
    "Thresholds",
    "ValidationFailed",
    "ValidationReport",
    "Violation",
    "check_onnx",
    "compare_logits",
    "default_output",
    "export_onnx",
    "fold_batchnorm",
    "lint_onnx",
    "resnet_to_onnx",
    "validate_runtime",
]
