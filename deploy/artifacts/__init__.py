"""What artifacts say about themselves: the model metadata inside an ONNX file (`ModelInfo`),
an ONNX file's signature (`inspect_onnx`), the manifest beside an engine, tensor descriptions,
class labels. Read by every stage, so that nobody repeats how a model was made.

Imports `resnet` and `toolkit` only; the runtimes and the deployment formats build on it.
"""

from .labels import read_labels, resolve_labels
from .manifest import (
    BatchRange,
    EngineEnvironment,
    EngineManifest,
    check_compatible,
    manifest_path,
    read_manifest,
    write_manifest,
)
from .metadata import ModelInfo
from .onnx_file import OnnxSignature, inspect_onnx, read_onnx_info
from .tensors import TensorInfo

__all__ = [
    "BatchRange",
    "EngineEnvironment",
    "EngineManifest",
    "ModelInfo",
    "OnnxSignature",
    "TensorInfo",
    "check_compatible",
    "inspect_onnx",
    "manifest_path",
    "read_labels",
    "read_manifest",
    "read_onnx_info",
    "resolve_labels",
    "write_manifest",
]
