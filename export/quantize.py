"""INT8: post-training static quantization of an exported FP32 graph, calibrated on real images,
into explicit QuantizeLinear/DequantizeLinear (Q/DQ) form, with ONNX Runtime's quantizer.

Two targets want two different files (measured: ResNet-50 at batch 8 in ONNX Runtime on an AVX2
CPU runs the asymmetric form 2.9x faster than FP32 and the symmetric form no faster):

- "cpu": every tensor ONNX Runtime can quantize, activations uint8 (asymmetric), weights int8
  symmetric per channel, biases int32; ReLUs vanish into the activations' ranges. ONNX Runtime's
  CPU kernels fuse these into QLinearConv and friends.
- "tensorrt": TensorRT's explicit quantization: symmetric int8 Q/DQ on the inputs of every
  convolution, of the classifier, and of every residual Add (so the sum runs in INT8), weights
  int8 symmetric per channel, biases left in float; nothing else. TensorRT 11 (strongly typed)
  and 10 (STRONGLY_TYPED network) compile exactly this, with no precision flag.

Calibration images go through the model's own preprocessing (its input spec), like every other
stage's; the record written into the file's metadata names the method, the number of images
and a hash of their list.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.datasets import ImageSet, read_image_folder
from deploy.preprocess import ImageError, preprocess
from resnet.spec import InputSpec
from toolkit.errors import ToolkitError
from toolkit.numbers import check_number
from toolkit.optional import require
from toolkit.provenance import version_of

INT8_TARGETS = ("cpu", "tensorrt")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_SIZE = 256
MIN_OPSET = 13  # per-channel DequantizeLinear (its axis attribute) first appears in opset 13
CALIBRATION_BATCH = 16


@dataclass(frozen=True)
class Int8Options:
    calibration: Path  # a folder of images: ImageFolder or flat
    target: str = "cpu"
    method: str = "minmax"
    size: int = DEFAULT_CALIBRATION_SIZE

    def check(self, opset: int) -> None:
        if self.target not in INT8_TARGETS:
            raise ToolkitError(f"INT8 target must be one of {', '.join(INT8_TARGETS)}, got {self.target!r}")
        if self.method not in CALIBRATION_METHODS:
            raise ToolkitError(
                f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}"
            )
        check_number(self.size, "--calibration-size", integer=True, low=1, high=100_000)
        if opset < MIN_OPSET:
            raise ToolkitError(f"INT8 files need opset {MIN_OPSET} or later (per-channel Q/DQ), got --opset {opset}")


def default_int8_target() -> str:
    """The INT8 target when none is named: "tensorrt" where a CUDA GPU is here (an engine will be
    built), else "cpu" (ONNX Runtime on this machine's CPU)."""
    from deploy.runtimes.gpu import cuda_available

    return "tensorrt" if cuda_available() else "cpu"


def calibration_images(options: Int8Options) -> ImageSet:
    """The calibration folder's images (labels are ignored), at most `options.size` of them."""
    return read_image_folder(options.calibration, labeled=False).subset(options.size)


def _reader(images: ImageSet, spec: InputSpec, input_name: str):
    """An ONNX Runtime calibration data reader over the images, preprocessed as the model's are."""
    from onnxruntime.quantization import CalibrationDataReader

    arrays, skipped = [], []
    for path in images.files:
        try:
            arrays.append(preprocess(path, spec))
        except ImageError as error:
            skipped.append(str(error))
    if not arrays:
        raise ToolkitError(
            f"none of the {len(images)} calibration images in {images.root} could be read ({skipped[0]})"
        )

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                {input_name: np.stack(arrays[i : i + CALIBRATION_BATCH])}
                for i in range(0, len(arrays), CALIBRATION_BATCH)
            )

        def get_next(self):
            return next(self._batches, None)

    return Batches(), len(arrays), skipped


def quantize_onnx(fp32_path: Path, int8_path: Path, spec: InputSpec, input_name: str, options: Int8Options) -> dict:
    """Write the INT8 Q/DQ form of `fp32_path` to `int8_path`; returns the quantization record
    (target, method, images used, their list's hash, skipped images, quantizer version)."""
    require("onnxruntime", "INT8 quantization (ONNX Runtime's quantizer)")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    images = calibration_images(options)
    reader, used, skipped = _reader(images, spec, input_name)
    settings = dict(
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[options.method],
    )
    if options.target == "cpu":
        settings.update(activation_type=QuantType.QUInt8)
    else:
        settings.update(
            activation_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm", "Add"],
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": ["Conv", "Gemm", "Add"],
            },
        )
    # The quantizer prints progress and advice on stdout and the root logger: kept off the terminal.
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(fp32_path), str(int8_path), reader, **settings)
    finally:
        logging.disable(logging.NOTSET)
    return {
        "target": options.target,
        "activations": "uint8 asymmetric" if options.target == "cpu" else "int8 symmetric",
        "weights": "int8 symmetric per channel",
        "calibration_method": options.method,
        "calibration_images": used,
        "calibration_skipped": len(skipped),
        "calibration_hash": images.fingerprint(),
        "quantizer": f"onnxruntime {version_of('onnxruntime')}",
    }
