"""An engine with every layer's output: rebuilt from the ONNX file a shipped engine's manifest
names, with each module point marked as an output (what `resnet-compare` reads an engine's layers
through). Written against TensorRT 11.4's and 10.13's Python API, not run here (no GPU)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from deploy.artifacts.manifest import BatchRange, EngineManifest, write_manifest
from deploy.artifacts.onnx_file import inspect_onnx
from deploy.runtimes.tensorrt import engine_environment, import_tensorrt
from toolkit.errors import ToolkitError

from .engine import BuildOptions, _build_serialized, engine_manifest


def build_tapped(engine_path: Path, points: list[str], folder: Path) -> tuple[Path, Path]:
    """An engine rebuilt from the ONNX file `engine_path`'s manifest names (found where the manifest says,
    or beside the engine, and only with the manifest's checksum), with the tensor of each module
    point marked as an output (`deploy.artifacts.onnx_file.tapped_onnx`), written with its manifest
    into `folder`; (the rebuilt engine, the ONNX file it came from). Opened with those points as
    named outputs (`RuntimeOptions(outputs=...)`), it gives every layer's output. Marking outputs
    keeps TensorRT from fusing across them: each layer is computed as in the shipped engine, not
    bit for bit. Same TF32 setting as the shipped engine; batches 1 to 64 (or the file's fixed batch)."""
    from dataclasses import replace

    from deploy.artifacts.manifest import read_manifest
    from deploy.artifacts.onnx_file import tapped_onnx

    manifest = read_manifest(engine_path)
    if manifest is None or manifest.model is None:
        raise ToolkitError(
            f"{engine_path.name} has no resnet-build manifest naming its ONNX file, so it can't be tapped"
        )
    source = _engine_source(engine_path, manifest)
    tapped, _ = tapped_onnx(source, points, folder)
    signature = replace(inspect_onnx(source), path=tapped)
    low = high = signature.input.batch
    batches = BatchRange(low or 1, min(max(low or 1, 8), high or 64), high or 64)
    options = BuildOptions(tf32=manifest.tf32)
    import_tensorrt()
    started = time.perf_counter()
    engine_bytes, _, flags = _build_serialized(signature, batches, options, None)
    rebuilt = folder / f"tapped_{engine_path.stem}.plan"
    rebuilt.write_bytes(engine_bytes)
    write_manifest(
        engine_manifest(
            signature, rebuilt, engine_bytes, engine_environment(), batches, options, flags,
            time.perf_counter() - started,
        ),
        rebuilt,
    )  # fmt: skip
    return rebuilt, source


def _engine_source(engine_path: Path, manifest: EngineManifest) -> Path:
    """The ONNX file an engine was built from: where its manifest says, or beside the engine,
    and only when its checksum is the manifest's."""
    recorded = Path(manifest.source_onnx.get("file", ""))
    for candidate in (recorded, engine_path.parent / recorded.name):
        if candidate.is_file() and hashlib.sha256(candidate.read_bytes()).hexdigest() == manifest.source_onnx.get(
            "sha256"
        ):
            return candidate
    raise ToolkitError(
        f"the ONNX file {engine_path.name} was built from ({recorded}) is not there, or has changed since; "
        "put that file beside the engine (its layers are read from it)"
    )
