"""The export package's commands: `resnet-export` (a registered ResNet to one validated ONNX file),
`resnet-build` (an ONNX file to a validated TensorRT engine) and `resnet-compare` (two forms of a
model, layer by layer; INT8 sensitivity), one module each, with what they share in `options`.
Each command parses its options, most of them in groups that give the library's own objects
(`ModelOptions`, `Int8Options`, `Thresholds`, `BuildOptions`), calls one library function
(`export_onnx`, `build_engine`, `compare_models`, `int8_sensitivity`) and prints its report;
nothing else in the package prints or exits."""

from .build_command import build_main, format_build_report
from .compare_command import compare_main, format_layers, format_sensitivity
from .export_command import format_report, main
from .options import report_failure, threshold_options, validation_lines

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
