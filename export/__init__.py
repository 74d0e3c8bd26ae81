"""Making artifacts: ONNX at an exact opset (FP32, FP16, INT8), the graph lint, validation, TensorRT engines.

Imports `toolkit`, `resnet` and `deploy` (docs/design.md); validation runs the artifacts through
`deploy.runtimes`, so what is validated is what ships. The names below are loaded when first used,
so that the parts that need no PyTorch (building an engine, comparing two ONNX files) import none:
a board installed without the `export` extra builds its engine here.
"""

from __future__ import annotations

from toolkit.lazy import lazy_names

# name -> the module of this package that defines it
_NAMES = {
    "BuildOptions": "engine",
    "BuildReport": "engine",
    "EngineBuildError": "engine",
    "build_engine": "engine",
    "resolve_batches": "engine",
    "GraphContractError": "lint",
    "LintReport": "lint",
    "Violation": "lint",
    "check_onnx": "lint",
    "lint_onnx": "lint",
    "ExportReport": "onnx_export",
    "default_output": "onnx_export",
    "export_onnx": "onnx_export",
    "DEFAULT_OPSET": "opsets",
    "SUPPORTED_OPSETS": "opsets",
    "ExportError": "onnx_graph",
    "fold_batchnorm": "onnx_graph",
    "resnet_to_onnx": "onnx_graph",
    "Thresholds": "validate",
    "ValidationFailed": "validate",
    "ValidationReport": "validate",
    "compare_logits": "validate",
    "validate_runtime": "validate",
}


__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_names(__name__, _NAMES, __all__)
