"""The export package's commands: `resnet-export` (a registered ResNet to one validated ONNX file),
`resnet-build` (an ONNX file to a validated TensorRT engine) and `resnet-compare` (two forms of a
model, layer by layer; INT8 sensitivity), one module each, with what they share in `options`.
Each command parses its options, most of them in groups that give the library's own objects
(`ModelOptions`, `Int8Options`, `Thresholds`, `BuildOptions`), calls one library function
(`export_onnx`, `build_engine`, `compare_models`, `int8_sensitivity`) and prints its report;
nothing else in the package prints or exits."""

from __future__ import annotations

from toolkit.lazy import lazy_names

# name -> the module of this package that defines it (loaded on first use: resnet-build and
# resnet-compare of ONNX files run without PyTorch, resnet-export does not)
_NAMES = {
    "build_main": "build_command",
    "format_build_report": "build_command",
    "compare_main": "compare_command",
    "format_layers": "compare_command",
    "format_sensitivity": "compare_command",
    "format_report": "export_command",
    "main": "export_command",
    "report_failure": "options",
    "threshold_options": "options",
    "validation_lines": "options",
}


__all__ = [
    "build_main",
    "compare_main",
    "format_build_report",
    "format_layers",
    "format_report",
    "format_sensitivity",
    "main",
    "report_failure",
    "threshold_options",
    "validation_lines",
]

__getattr__, __dir__ = lazy_names(__name__, _NAMES, __all__)
