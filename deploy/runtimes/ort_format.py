"""A model in ONNX Runtime's own format (`.ort`, a FlatBuffer of the graph ONNX Runtime optimized
once, when it was written): what ORT's minimal build for small boards runs, and what a full build
opens faster and in less memory than the `.onnx` it came from, at the same speed (measured on the
2-core EPYC: docs/benchmark.md).

An `.ort` file is written for one platform (`python -m onnxruntime.tools.convert_onnx_models_to_ort
--target_platform arm|amd64` does the same): "arm" for aarch64 (int8 Q/DQ kept as int8, no NCHWc
layout), "amd64" for x86-64, whose file holds the NCHWc layout of the CPU that wrote it: its block
is 16 channels on a CPU with AVX-512, 8 with AVX2 only, and a file of one block computes garbage or
fails on a CPU of the other (onnxruntime#26174). So `write_ort_format` records the platform, the
ONNX Runtime release and, for x86-64, the writer's AVX2/AVX-512 flags; `ort_format_problem` says why
a file can't run here (another machine, another release, other flags), and then the `.onnx` runs.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ToolkitError, clip

from .cpu import CpuFeatures, architecture

TARGETS = {"aarch64": "arm", "x86_64": "amd64"}  # the board's machine -> ONNX Runtime's target platform
NCHWC_FLAGS = ("avx2", "avx512f")  # what decides the NCHWc block of an x86-64 file


def write_ort_format(onnx_file: Path, ort_file: Path, platform: str) -> dict:
    """`onnx_file` optimized by ONNX Runtime for `platform` ("aarch64" or "x86_64") and saved in its
    format as `ort_file` (every optimization level; NCHWc only for x86-64 written on x86-64); the
    record a bundle's manifest keeps of it."""
    from .onnxruntime import import_onnxruntime

    ort = import_onnxruntime()
    target = TARGETS[platform]
    here = CpuFeatures.probe()
    nchwc = target == "amd64" and here.machine == "x86_64"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(ort_file)
    options.add_session_config_entry("session.save_model_format", "ORT")
    options.log_severity_level = 3  # not its warning that an NCHWc layout is this CPU's: recorded below
    options.add_session_config_entry("session.qdqisint8allowed", "1" if target == "arm" else "0")
    try:
        ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=[] if nchwc else ["NchwcTransformer"])  # fmt: skip
    except Exception as error:  # ONNX Runtime's own exceptions: one sentence
        raise ToolkitError(f"ONNX Runtime could not write {onnx_file.name} in its format: {clip(str(error))}") from None
    record = {"platform": platform, "target": target, "onnxruntime": ort.__version__}
    if target == "amd64":
        record["nchwc_flags"] = [flag for flag in NCHWC_FLAGS if flag in here.flags] if nchwc else None
    return record


def ort_format_problem(record: dict, features: CpuFeatures | None = None) -> str | None:
    """Why a `.ort` file of this `record` can't run on this machine (`features`: its CPU's), or None."""
    import onnxruntime

    machine = architecture() if features is None else features.machine
    if record.get("platform") != machine:
        return f"it was written for {record.get('platform')}, this machine is {machine}"
    if record.get("onnxruntime") != onnxruntime.__version__:
        return f"it was written by ONNX Runtime {record.get('onnxruntime')}, this is {onnxruntime.__version__}"
    flags = record.get("nchwc_flags")
    if flags is not None:
        here = [flag for flag in NCHWC_FLAGS if flag in (features or CpuFeatures.probe()).flags]
        if sorted(flags) != sorted(here):
            wrote = ", ".join(flags) or "neither"
            return f"its NCHWc layout is for a CPU with {wrote} of AVX2/AVX-512, this one has {', '.join(here) or 'neither'}"
    return None
