"""INT8: post-training static quantization of an exported FP32 graph, calibrated on real images,
into explicit QuantizeLinear/DequantizeLinear (Q/DQ) form, with ONNX Runtime's quantizer.

Two targets want two different files (measured: ResNet-50 at batch 8 in ONNX Runtime on an AVX2
CPU runs the asymmetric form 2.1x faster than FP32 and the symmetric form no faster; 3.3x and
0.98x on an AMD EPYC with AVX-512 VNNI):

- "cpu": every tensor ONNX Runtime can quantize, activations uint8 (asymmetric), weights int8
  symmetric per channel in a 7-bit range ([-64, 64]: ONNX Runtime's `reduce_range`), biases
  int32; ReLUs vanish into the activations' ranges. ONNX Runtime's CPU kernels fuse these into
  QLinearConv and friends. Why 7 bits: on an x86 CPU without VNNI, ONNX Runtime's and OpenVINO's
  kernels multiply uint8 by int8 with `vpmaddubsw`, which adds pairs of products into int16 with
  saturation; with 8-bit weights a pair reaches 2 x 255 x 127 = 64,770 and saturates (the digits
  model lost 0.6 and 3.6 points of top-1 that way), with 7-bit weights it stays within
  2 x 255 x 64 = 32,640 <= 32,767, so the integer sums are exact on every x86 CPU and the file
  gives the same logits, bit for bit, with and without VNNI. It costs nothing measurable: the same
  top-1 on VNNI for three digits models, the same speed (ResNet-50 batch 8: 3.34x FP32 against
  3.36x for 8-bit weights, one run). docs/accuracy.md has the figures.
- "tensorrt": TensorRT's explicit quantization: symmetric int8 Q/DQ on the inputs of every
  convolution, of the classifier, and of every residual Add (so the sum runs in INT8), weights
  int8 symmetric per channel, biases left in float; nothing else. TensorRT 11 (strongly typed)
  and 10 (STRONGLY_TYPED network) compile exactly this, with no precision flag.

Calibration images go through the model's own preprocessing (its input spec), like every other
stage's; the record written into the file's metadata names the method, the number of images
and a hash of their list.

Layers can be kept in float (`Int8Options.keep_float`, `resnet-export --keep-float`, what
`resnet-compare sensitivity` proposes): module names (`layer1.0.conv1`, `fc`) or prefixes of
them (`layer1.0`, a whole block; `layer4`, a stage), each naming the graph's nodes of that module
(`kept_nodes`). They go to ONNX Runtime's quantizer as `nodes_to_exclude`: such a node keeps float
weights and float arithmetic, and reads its input as the rest of the graph left it (dequantized,
when another consumer of that tensor is quantized). The record lists them; the lint reads it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploy.datasets import ImageSet, read_image_folder
from deploy.preprocess import ImageError, preprocess
from resnet.spec import InputSpec
from toolkit.errors import ToolkitError
from toolkit.files import notice
from toolkit.numbers import check_number
from toolkit.optional import require
from toolkit.provenance import version_of

INT8_TARGETS = ("cpu", "tensorrt")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_SIZE = 256
# The "cpu" form's weights: 7-bit (see the module docstring); a record without "weight_bits" (files
# written before it was recorded) has 8-bit weights.
CPU_WEIGHT_BITS = 7
MIN_OPSET = 13  # per-channel DequantizeLinear (its axis attribute) first appears in opset 13
CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class Int8Options:
    calibration: Path  # a folder of images: ImageFolder or flat
    target: str = "cpu"
    method: str = "minmax"
    size: int = DEFAULT_CALIBRATION_SIZE
    keep_float: tuple[str, ...] = ()  # module names (or prefixes: a block, a stage) left in float
    # the sensitivity JSON the names came from, and the weights it measured (`weights_fingerprint`)
    keep_float_file: str | None = None
    keep_float_weights: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_float", tuple(self.keep_float))

    def check(self, opset: int) -> None:
        if self.target not in INT8_TARGETS:
            raise ToolkitError(f"INT8 target must be one of {', '.join(INT8_TARGETS)}, got {self.target!r}")
        if self.method not in CALIBRATION_METHODS:
            raise ToolkitError(
                f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}"
            )
        check_number(self.size, "--calibration-size", integer=True, limit="images")
        if opset < MIN_OPSET:
            raise ToolkitError(f"INT8 files need opset {MIN_OPSET} or later (per-channel Q/DQ), got --opset {opset}")


def kept_nodes(node_names, keep_float) -> list[str]:
    """The names among `node_names` that `keep_float` names: a node is kept when a name equals it
    or is a prefix of it up to a dot (`layer1.0` keeps `layer1.0.conv1`, not `layer1.01.conv1`).
    A name that matches no node is an error, with some that would."""
    node_names = list(node_names)
    kept = []
    for name in keep_float:
        matched = [n for n in node_names if n == name or n.startswith(name + ".")]
        if not matched:
            known = sorted({n.rsplit(".", 1)[0] for n in node_names if n.startswith("layer")})[:4]
            raise ToolkitError(
                f"--keep-float {name!r} names no layer of the graph; give module names such as conv1, fc, "
                f"{', '.join(known + ['layer1.0.conv1'])} (a block or stage name keeps all of its layers)"
            )
        kept += [n for n in matched if n not in kept]
    return kept


def weights_fingerprint(graph) -> str:
    """A SHA-256 of an ONNX graph's float weights, whatever their names and order: the same for two
    exports of one checkpoint (any opset), different for any other weights."""
    import hashlib

    from onnx import TensorProto, numpy_helper

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    digests = sorted(
        hashlib.sha256(repr(array.shape).encode() + array.astype("<f4").tobytes()).hexdigest()
        for array in (numpy_helper.to_array(t) for t in graph.initializer if t.data_type in floats)
    )
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def check_keep_float_weights(graph, options: Int8Options) -> None:
    """A keep-float set read from a sensitivity JSON must have been chosen on these weights."""
    if options.keep_float_weights and options.keep_float_weights != weights_fingerprint(graph):
        raise ToolkitError(
            f"{options.keep_float_file} chose its layers on other weights than this model's (it measured another "
            "checkpoint or model): run resnet-compare sensitivity on this model's FP32 file, or give the layers by name"
        )


def read_keep_float(text: str, target: str | None = None) -> dict:
    """`Int8Options`' keep-float fields from `--keep-float`: layer names, as a comma-separated list,
    or a file holding one (commas or lines), or the JSON that `resnet-compare sensitivity --json`
    writes (its "keep_float"; the INT8 target it measured must be `target`; the weights it measured
    are kept, for `quantize_onnx` to check against the model's)."""
    from toolkit.files import read_json_file, read_small_text

    path = Path(text)
    if path.exists():
        kind = "a list of layer names or resnet-compare sensitivity's JSON"
        content = read_small_text(path, "--keep-float", kind)
        if content.lstrip().startswith(("{", "[")):
            document = read_json_file(path, "--keep-float", kind)
            names = document.get("keep_float") if isinstance(document, dict) else None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ToolkitError(f'{path} is JSON without a "keep_float" list of layer names')
            measured = document.get("target")
            if target is not None and isinstance(measured, str) and measured != target:
                raise ToolkitError(
                    f"{path} chose its layers for --int8-target {measured}, not {target}: export with --int8-target "
                    f"{measured}, or run resnet-compare sensitivity --int8-target {target} again"
                )
            weights = document.get("weights_sha256")
            weights = weights if isinstance(weights, str) and weights else None  # older files: none
            return {"keep_float": tuple(names), "keep_float_file": str(path), "keep_float_weights": weights}
        text = content.replace("\n", ",")
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        where = f"{path} names no layer" if path.exists() else "--keep-float needs layer names"
        raise ToolkitError(f"{where}: give layer names (layer1.0.conv1,fc) or a file of them")
    return {"keep_float": names}


def default_int8_target() -> str:
    """The INT8 target when none is named: "tensorrt" where a CUDA GPU is here (an engine will be
    built), else "cpu" (ONNX Runtime on this machine's CPU)."""
    from deploy.runtimes.gpu import cuda_available

    return "tensorrt" if cuda_available() else "cpu"


def calibration_images(options: Int8Options) -> ImageSet:
    """The calibration folder's images (labels are ignored), at most `options.size` of them."""
    return read_image_folder(options.calibration, labeled=False).subset(options.size)


class _Batches:
    """Calibration batches read lazily, one at a time, so that memory does not grow with the folder:
    the images of a batch are preprocessed (as the model's are) when ONNX Runtime asks for it.
    With a fixed batch size (a `--static-batch` graph), every batch has exactly that many images
    (a short one is filled by repeating its own). Unreadable images are skipped and counted.
    ONNX Runtime's strided calibration (`set_range`, one batch per pass) keeps its own memory to
    one batch's activations too, whatever the method."""

    fixed = False  # every batch exactly `batch` images

    def __init__(self, images: ImageSet, spec: InputSpec, input_name: str, batch: int) -> None:
        self.files, self.spec, self.input_name, self.batch = images.files, spec, input_name, batch
        self.count = (len(self.files) + batch - 1) // batch
        self.used, self.skipped = 0, []
        self._pending = iter(range(self.count))

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pending = iter(range(start_index, min(end_index, self.count)))

    def get_next(self):
        for index in self._pending:
            arrays = []
            for path in self.files[index * self.batch : (index + 1) * self.batch]:
                try:
                    arrays.append(preprocess(path, self.spec))
                except ImageError as error:
                    self.skipped.append(str(error))
            self.used += len(arrays)
            if arrays:
                filled = [arrays[i % len(arrays)] for i in range(self.batch)] if self.fixed else arrays
                return {self.input_name: np.stack(filled)}
        return None


def _reader(images: ImageSet, spec: InputSpec, input_name: str, fixed_batch: int | None):
    """The calibration reader (an ONNX Runtime `CalibrationDataReader`), after checking that at
    least one image can be read (else one sentence naming the first and why)."""
    from onnxruntime.quantization import CalibrationDataReader

    for path in images.files:
        try:
            preprocess(path, spec)
            break
        except ImageError as error:
            first = str(error)
    else:
        raise ToolkitError(f"none of the {len(images)} calibration images in {images.root} could be read ({first})")

    class Reader(_Batches, CalibrationDataReader):
        fixed = fixed_batch is not None

    return Reader(images, spec, input_name, fixed_batch or CALIBRATION_BATCH)


def _settings(options: Int8Options, kept: list[str] = ()) -> dict:
    """`quantize_static`'s arguments for the target's form (see the module docstring); `kept`: the
    nodes left in float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    methods["percentile"] = CalibrationMethod.Percentile
    settings = dict(
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        calibrate_method=methods[options.method],
        extra_options={"CalibStridedMinMax": 1},  # one batch per calibration pass: bounded memory
        nodes_to_exclude=list(kept),
    )
    if options.target == "cpu":
        settings.update(activation_type=QuantType.QUInt8, reduce_range=True)  # CPU_WEIGHT_BITS: [-64, 64]
        return settings
    settings.update(activation_type=QuantType.QInt8, op_types_to_quantize=["Conv", "Gemm", "Add"])
    settings["extra_options"].update(
        ActivationSymmetric=True,
        WeightSymmetric=True,
        QuantizeBias=False,
        OpTypesToExcludeOutputQuantization=["Conv", "Gemm", "Add"],
    )
    return settings


@dataclass
class CalibrationCache:
    """Calibration done once for several quantizations of one FP32 file that differ only in the
    layers kept in float (`resnet-compare sensitivity` writes about 30): the activation ranges ONNX Runtime's
    calibration measured (its JSON cache, at `path`) and what the images gave. The ranges do not
    depend on the kept layers: every tensor of the quantized op types is calibrated either way.
    Used where ONNX Runtime's `quantize_static` takes `calibration_cache_path` (1.24 and later);
    elsewhere each quantization calibrates again."""

    path: Path
    used: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return self.path.is_file()


def _takes_cache(quantize_static) -> bool:
    import inspect

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


def quantize_onnx(
    fp32_path: Path,
    int8_path: Path,
    spec: InputSpec,
    input_name: str,
    options: Int8Options,
    fixed_batch: int | None = None,
    cache: CalibrationCache | None = None,
) -> dict:
    """Write the INT8 Q/DQ form of `fp32_path` to `int8_path`; returns the quantization record
    (target, method, images used, their list's hash, skipped images, quantizer version).
    `fixed_batch` is the graph's batch size when it is fixed (calibration batches then have it).
    `cache`: calibrate once for several calls (`CalibrationCache`). Unreadable calibration images
    are said (`toolkit.files.notice`), once per cache."""
    require("onnxruntime", "INT8 quantization (ONNX Runtime's quantizer)")
    import onnx
    from onnxruntime.quantization import quantize_static

    images = calibration_images(options)
    graph = onnx.load(str(fp32_path), load_external_data=options.keep_float_weights is not None).graph
    check_keep_float_weights(graph, options)
    kept = kept_nodes((n.name for n in graph.node), options.keep_float)
    computing = {n.name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
    if computing and computing <= set(kept):
        raise ToolkitError(
            "--keep-float keeps every convolution and the fc layer in float: nothing INT8 would be left to label "
            "the file int8; export it with --precision fp32 (or keep fewer layers)"
        )
    settings = _settings(options, kept)
    cache = cache if cache is not None and _takes_cache(quantize_static) else None
    reader = None if cache is not None and cache.ready else _reader(images, spec, input_name, fixed_batch)
    if cache is not None:
        settings["calibration_cache_path"] = str(cache.path)
    # The quantizer prints progress and advice on stdout and the root logger: kept off the terminal.
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(fp32_path), str(int8_path), reader, **settings)
    finally:
        logging.disable(logging.NOTSET)
    used, skipped = (reader.used, reader.skipped) if reader is not None else (cache.used, cache.skipped)
    if reader is not None and cache is not None:
        cache.used, cache.skipped = used, skipped
    if reader is not None and skipped:
        notice(
            f"{len(skipped)} of the {len(images)} calibration images could not be read and were skipped "
            f"(the first: {skipped[0]})"
        )
    bits = CPU_WEIGHT_BITS if options.target == "cpu" else 8
    return {
        "target": options.target,
        "activations": "uint8 asymmetric" if options.target == "cpu" else "int8 symmetric",
        "weights": "int8 symmetric per channel" + (f" ({bits}-bit range)" if bits < 8 else ""),
        "weight_bits": bits,
        "calibration_method": options.method,
        "calibration_images": used,
        "calibration_skipped": len(skipped),
        "calibration_hash": images.fingerprint(),
        "quantizer": f"onnxruntime {version_of('onnxruntime')}",
    } | ({"keep_float": list(options.keep_float), "float_nodes": kept} if kept else {})
