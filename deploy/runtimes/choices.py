"""The runtimes' choice tables: which backend runs which file, the providers, hints and precisions a
command may offer, and which of `RuntimeOptions` each backend honours.

A leaf: it imports none of the runtimes, so the option parsing of every command (and
`RuntimeOptions` itself) reads its choices here without loading a backend, and no runtime module
imports another one's tables.
"""

from __future__ import annotations

# A file's backend, by its suffix.
BACKENDS = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnxruntime", ".pt": "pytorch", ".pth": "pytorch"}
# Backends that run a kind of file besides its default one: OpenVINO runs ONNX files on CPUs.
ALTERNATIVES = {"onnxruntime": ("openvino",)}
# "tensorrt", "onnxruntime", "pytorch", "openvino"; "auto" picks among a file's (`open.choose_backend`).
BACKEND_NAMES = (*dict.fromkeys(BACKENDS.values()), "openvino")
BACKEND_CHOICES = (*BACKEND_NAMES, "auto")
# What a bundle (model.onnx, and an engine where one was built) can run in.
BUNDLE_BACKEND_CHOICES = ("onnxruntime", "openvino", "tensorrt", "auto")

DEVICES = ("cpu", "cuda")
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
CONV_SEARCHES = ("exhaustive", "heuristic", "default")  # cuDNN's convolution algorithm search (ONNX Runtime on CUDA)
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # --precision -> OpenVINO's INFERENCE_PRECISION_HINT
OPENVINO_HINTS = ("latency", "throughput")
# Triton's backends for a repository's model: the file's platform (onnxruntime, tensorrt; NVIDIA's
# container), or python (the toolkit's runtime inside Triton: deploy.serving)
TRITON_BACKENDS = ("onnxruntime", "tensorrt", "python")

# The `RuntimeOptions` fields each backend honours. `open_runtime` refuses one that is set (differs
# from its default) for a backend that would ignore it. Every backend honours `device` (where it
# runs: ONNX Runtime's provider when none is named, PyTorch's device; OpenVINO runs on the CPU and
# TensorRT on the GPU), and the two capabilities: named intermediate outputs (`outputs`) and the
# backend's profiler (`layer_times`).
COMMON_OPTIONS = ("backend", "device", "outputs", "layer_times")
HONOURED = {
    "onnxruntime": (*COMMON_OPTIONS, "provider", "threads", "cuda_graphs", "max_batch", "conv_search", "prefer_nhwc"),
    "openvino": (*COMMON_OPTIONS, "threads", "precision", "openvino_hint"),
    "pytorch": (*COMMON_OPTIONS, "threads", "precision", "compile", "channels_last", "cuda_graphs", "max_batch"),
    "tensorrt": (*COMMON_OPTIONS, "cuda_graphs"),
}
# The arithmetic a backend can be asked for with `precision` (the others compute what the file says).
PRECISIONS = {"openvino": tuple(OPENVINO_PRECISIONS), "pytorch": ("fp32", "fp16", "bf16")}
# How a command spells each option (for the refusals).
OPTION_FLAGS = {
    "provider": "--provider",
    "threads": "--threads",
    "cuda_graphs": "--cuda-graph",
    "device": "--device",
    "precision": "--precision",
    "openvino_hint": "--openvino-hint",
    "compile": "--compile",
    "channels_last": "--channels-last",
    "max_batch": "--max-batch",
    "conv_search": "--cudnn-search",
    "prefer_nhwc": "--no-nhwc",
    "outputs": "named outputs",
    "layer_times": "--profile",
}
BACKEND_TITLES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "pytorch": "PyTorch", "tensorrt": "TensorRT"}
