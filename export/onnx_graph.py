"""A `resnet.ResNet` written as an ONNX graph, node by node, at exactly the opset asked for.

Why not `torch.onnx.export`: on torch 2.13 neither exporter gives the graph this toolkit
promises at every opset. The dynamo exporter supports opsets 18 and up and, asked for 17,
prints a warning and returns opset 18 (ONNX's version converter has no adapter for Pad-18, so
the conversion down fails for every Option A model); the TorchScript exporter honours the
opset but lowers `F.pad` to a subgraph that computes the pads at run time (ConstantOfShape,
Concat, Reshape, Transpose, Cast, Slice), which TensorRT's ONNX parser rejects (it needs
constant pads), and leaves one Identity node per BatchNorm. A ResNet is a short list of
layer types, so this module writes the graph directly from the modules instead:

- BatchNorm is folded into the preceding convolution (in float64, then rounded once to the
  graph's precision), which is the eval-mode function of the model;
- Option A is one Slice (axes 2, 3, steps = stride; omitted when the stride is 1) and one Pad
  (zeros after the input's channels) with constant initializers;
- only Conv, Relu, Add, MaxPool, GlobalAveragePool, Flatten, Gemm, Slice, Pad (and Cast at the
  edges of an FP16 graph with FP32 I/O) appear, and each op exists unchanged in every opset of
  `SUPPORTED_OPSETS`, so the file is the same graph whatever opset it declares;
- nodes carry the module names (`layer2.0.conv1`, `layer2.0.downsample.pad`), which is what
  TensorRT and the lint report when something goes wrong.

The export is checked against PyTorch by `export.validate` every time, so a difference between
this writer and the modules' `forward` cannot go unnoticed.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

import toolkit
from deploy.artifacts.metadata import ModelInfo
from resnet.blocks import BasicBlock, Bottleneck
from resnet.model import ResNet
from resnet.shortcuts import ShortcutA, ShortcutB
from toolkit.errors import ToolkitError
from toolkit.numbers import check_number
from toolkit.precision import FP16_MAX, GRAPH_PRECISIONS, IO_DTYPES, check_precision, numpy_dtype

from .opsets import DEFAULT_OPSET, SUPPORTED_OPSETS

INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "input", "logits", "batch"
_INT64_MAX = np.iinfo(np.int64).max


def onnx_type(precision: str) -> int:
    """The ONNX element type of a precision's tensors ("fp16" -> TensorProto.FLOAT16)."""
    return helper.np_dtype_to_tensor_dtype(numpy_dtype(precision))


class ExportError(ToolkitError):
    """A model or option the ONNX export cannot honour."""


def check_opset(opset: int) -> int:
    check_number(opset, "opset", integer=True)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(
            f"opset {opset} is not supported; choose {SUPPORTED_OPSETS.start} to {SUPPORTED_OPSETS.stop - 1} (default {DEFAULT_OPSET})"
        )
    return opset


def resolve_io_dtype(precision: str, io_dtype: str | None) -> str:
    """The element type of the graph's input and output: FP32 unless asked otherwise (see
    `resnet_to_onnx`), after checking that the pair can be exported."""
    check_precision(precision, GRAPH_PRECISIONS)
    io_dtype = check_precision(io_dtype or "fp32", IO_DTYPES, what="io dtype")
    if precision in ("fp32", "int8") and io_dtype == "fp16":
        raise ExportError("FP16 input and output need an FP16 graph: add --precision fp16")
    return io_dtype


class _GraphWriter:
    """Collects nodes and initializers; every node's single output is named after the node."""

    def __init__(self, precision: str) -> None:
        self.float_type = numpy_dtype(precision).type
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, name: str, array: np.ndarray) -> str:
        """A float initializer in the graph's precision (rounded once, from float64)."""
        if not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ExportError(
                f"{name} holds {bad} NaN or infinite values (after folding BatchNorm); the weights are damaged, "
                "so the file would compute nothing useful"
            )
        if self.float_type is np.float16 and np.abs(array).max(initial=0.0) > FP16_MAX:
            raise ExportError(
                f"{name} has values beyond FP16's range ({np.abs(array).max():.3g} > {FP16_MAX:.0f}); export it as fp32"
            )
        return self.constant(name, array.astype(self.float_type))

    def node(self, op: str, inputs: list[str], name: str, output: str | None = None, **attributes) -> str:
        output = output or name
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attributes))
        return output


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of one convolution equal to `bn(conv(x))` in eval mode, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise ExportError("BatchNorm without running statistics cannot be folded into a convolution")
    weight = conv.weight.detach().double().cpu().numpy()
    bias = conv.bias.detach().double().cpu().numpy() if conv.bias is not None else np.zeros(weight.shape[0])
    mean = bn.running_mean.detach().double().cpu().numpy()
    var = bn.running_var.detach().double().cpu().numpy()
    gamma = bn.weight.detach().double().cpu().numpy() if bn.affine else np.ones_like(mean)
    beta = bn.bias.detach().double().cpu().numpy() if bn.affine else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.eps)
    return weight * scale[:, None, None, None], (bias - mean) * scale + beta


def _conv_bn(g: _GraphWriter, x: str, conv: nn.Conv2d, bn: nn.BatchNorm2d, name: str) -> str:
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ExportError(f"{name}: only zero padding given as numbers is supported")
    weight, bias = fold_batchnorm(conv, bn)
    ph, pw = conv.padding
    return g.node(
        "Conv",
        [x, g.weight(f"{name}.weight", weight), g.weight(f"{name}.bias", bias)],
        name,
        kernel_shape=list(conv.kernel_size),
        strides=list(conv.stride),
        pads=[ph, pw, ph, pw],
        dilations=list(conv.dilation),
        group=conv.groups,
    )


def _shortcut(g: _GraphWriter, x: str, module: nn.Module, name: str) -> str:
    if isinstance(module, nn.Identity):
        return x
    if isinstance(module, ShortcutB):
        return _conv_bn(g, x, module[0], module[1], name)
    if isinstance(module, ShortcutA):
        if module.stride != 1:
            s = module.stride
            x = g.node(
                "Slice",
                [
                    x,
                    g.constant(f"{name}.slice.starts", np.array([0, 0], np.int64)),
                    g.constant(f"{name}.slice.ends", np.array([_INT64_MAX, _INT64_MAX], np.int64)),
                    g.constant(f"{name}.slice.axes", np.array([2, 3], np.int64)),
                    g.constant(f"{name}.slice.steps", np.array([s, s], np.int64)),
                ],
                f"{name}.slice",
            )
        # ONNX lists all begins, then all ends: (N, C, H, W) begin, (N, C, H, W) end.
        pads = np.array([0, 0, 0, 0, 0, module.extra_channels, 0, 0], np.int64)
        return g.node("Pad", [x, g.constant(f"{name}.pad.pads", pads)], f"{name}.pad", mode="constant")
    raise ExportError(f"{name}: cannot export a shortcut of type {type(module).__name__}")


def _block(g: _GraphWriter, x: str, block: nn.Module, name: str) -> str:
    if isinstance(block, BasicBlock):
        h = g.node("Relu", [_conv_bn(g, x, block.conv1, block.bn1, f"{name}.conv1")], f"{name}.relu1")
        h = _conv_bn(g, h, block.conv2, block.bn2, f"{name}.conv2")
    elif isinstance(block, Bottleneck):
        h = g.node("Relu", [_conv_bn(g, x, block.conv1, block.bn1, f"{name}.conv1")], f"{name}.relu1")
        h = g.node("Relu", [_conv_bn(g, h, block.conv2, block.bn2, f"{name}.conv2")], f"{name}.relu2")
        h = _conv_bn(g, h, block.conv3, block.bn3, f"{name}.conv3")
    else:
        raise ExportError(f"{name}: cannot export a block of type {type(block).__name__}")
    shortcut = _shortcut(g, x, block.downsample, f"{name}.downsample")
    return g.node("Relu", [g.node("Add", [h, shortcut], f"{name}.add")], f"{name}.relu")


def resnet_to_onnx(
    model: ResNet,
    *,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    io_dtype: str | None = None,
    batch: int = 1,
    dynamic_batch: bool = True,
    producer: dict | None = None,
    info: ModelInfo | None = None,
) -> onnx.ModelProto:
    """The ONNX model of `model` in eval mode, declaring exactly `opset` in the default domain.

    `precision="fp16"` writes an FP16 graph (weights and activations), which TensorRT builds
    as an FP16 engine. Its input and output stay FP32 by default, with one Cast at each edge,
    so that the file is a drop-in replacement for the FP32 one (same preprocessing, same Triton
    and client dtypes); `io_dtype="fp16"` removes the casts and halves host-device traffic, for
    callers that feed FP16 themselves. The batch axis is the symbolic dimension "batch" unless
    `dynamic_batch=False`, which fixes it to `batch`. `info` is the metadata written into the
    file (default: `ModelInfo.from_model` with these options and `producer`).
    """
    if not isinstance(model, ResNet):
        raise ExportError(f"export takes a resnet.ResNet (see resnet.create), got {type(model).__name__}")
    check_opset(opset)
    io_dtype = resolve_io_dtype(precision, io_dtype)
    if precision not in ("fp32", "fp16"):
        raise ExportError(
            f"the graph writer writes fp32 and fp16 graphs; {precision} comes from export_onnx (calibration)"
        )
    if batch < 1:
        raise ExportError(f"batch must be at least 1, got {batch}")
    g = _GraphWriter(precision)
    x = INPUT_NAME
    if io_dtype != precision:
        x = g.node("Cast", [x], "input.cast", to=onnx_type(precision))
    with torch.no_grad():
        x = _network(g, model, x, last=OUTPUT_NAME if io_dtype == precision else "fc")
    if io_dtype != precision:
        g.node("Cast", [x], "logits.cast", output=OUTPUT_NAME, to=onnx_type(io_dtype))
    info = info or ModelInfo.from_model(model, precision=precision, io_dtype=io_dtype, producer=producer)
    return _model_proto(g, model, opset, precision, io_dtype, BATCH_DIM if dynamic_batch else batch, info)


def _network(g: _GraphWriter, model: ResNet, x: str, last: str) -> str:
    """The nodes of the stem, the stages and the head (cookbook steps 7-9), from `x` to `last`."""
    # Step 7, the stem; the CIFAR stem has no max-pool.
    x = g.node("Relu", [_conv_bn(g, x, model.conv1, model.bn1, "conv1")], "relu")
    if isinstance(model.maxpool, nn.MaxPool2d):
        pool = model.maxpool
        if pool.ceil_mode or pool.dilation not in (1, (1, 1)):
            raise ExportError("maxpool: ceil_mode and dilation are not supported")
        k, s, p = (v if isinstance(v, int) else v[0] for v in (pool.kernel_size, pool.stride, pool.padding))
        x = g.node("MaxPool", [x], "maxpool", kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])
    # Step 8, the stages.
    for index, stage in enumerate(model.stages):
        for position, block in enumerate(stage):
            x = _block(g, x, block, f"layer{index + 1}.{position}")
    # Step 9, the head.
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    fc_weight = g.weight("fc.weight", model.fc.weight.detach().double().cpu().numpy())
    fc_bias = g.weight("fc.bias", model.fc.bias.detach().double().cpu().numpy())
    return g.node("Gemm", [x, fc_weight, fc_bias], "fc", output=last, transB=1)


def _model_proto(
    g: _GraphWriter, model: ResNet, opset: int, precision: str, io_dtype: str, batch, info: ModelInfo
) -> onnx.ModelProto:
    """The model around the written nodes: input and output (`batch` is a number or the symbolic
    "batch"), the opset and the lowest IR version it allows, producer, doc string and metadata."""
    spec = model.input_spec
    graph = helper.make_graph(
        g.nodes,
        model.name,
        [
            helper.make_tensor_value_info(
                INPUT_NAME, onnx_type(io_dtype), [batch, spec.channels, spec.height, spec.width]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx_type(io_dtype), [batch, spec.num_classes])],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    proto.producer_name, proto.producer_version = toolkit.NAME, toolkit.__version__
    proto.doc_string = (
        f"{model.name} ({model.dataset}, shortcut {model.architecture.shortcut}), {precision}, written by resnet-export"
    )
    helper.set_model_props(proto, info.to_metadata())
    return proto
