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
# What runs an artifact a deployment target ships (an ONNX file, or an engine; a checkpoint is
# exported first): the file's own backend, or OpenVINO for an ONNX file on CPUs. Every target
# (a bundle, Triton's Python backend, a Ray replica) offers these, and checks them with
# `check_shipped_runtime`.
SHIPPED_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
ONNX_BACKENDS = ("onnxruntime", *ALTERNATIVES["onnxruntime"])  # what runs an ONNX file
# What a bundle (model.onnx, and an engine where one was built) can run in.
BUNDLE_BACKEND_CHOICES = (*SHIPPED_BACKENDS, "auto")

DEVICES = ("cpu", "cuda")
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
CONV_SEARCHES = ("exhaustive", "heuristic", "default")  # cuDNN's convolution algorithm search (ONNX Runtime on CUDA)
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # --precision -> OpenVINO's INFERENCE_PRECISION_HINT
OPENVINO_HINTS = ("latency", "throughput")


def check_shipped_runtime(backend: str | None, precision: str, who: str, accepted=SHIPPED_BACKENDS) -> None:
    """A target's runtime, as its options name it: `backend` one of `accepted` (None: the file's
    own), and a `precision` other than fp32 only for OpenVINO, which computes it. One sentence
    naming `who` (the replica, the Python backend, a bundle's ONNX file) otherwise."""
    from toolkit.errors import ToolkitError

    if backend is not None and backend not in accepted:
        raise ToolkitError(f"{who} runs a file in {', '.join(accepted)}, not {backend!r}")
    if precision not in OPENVINO_PRECISIONS or (precision != "fp32" and backend != "openvino"):
        raise ToolkitError(
            f"--precision names OpenVINO's arithmetic ({' or '.join(OPENVINO_PRECISIONS)}): add --backend openvino"
        )


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
    "onnxruntime": (*COMMON_OPTIONS, "provider", "threads", "cuda_graphs", "buffer_rows", "conv_search", "prefer_nhwc"),
    "openvino": (*COMMON_OPTIONS, "threads", "precision", "openvino_hint"),
    "pytorch": (*COMMON_OPTIONS, "threads", "precision", "compile", "channels_last", "cuda_graphs", "buffer_rows"),
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
    "buffer_rows": "buffer rows (device runtimes)",
    "conv_search": "--cudnn-search",
    "prefer_nhwc": "--no-nhwc",
    "outputs": "named outputs",
    "layer_times": "--profile",
}
BACKEND_TITLES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "pytorch": "PyTorch", "tensorrt": "TensorRT"}
