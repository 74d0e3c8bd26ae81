"""The opsets the ONNX writer exports (`export.onnx_graph`), apart from it so that what names them
(`resnet-export --help`) needs no PyTorch."""

# Opset 11 is the first with Pad's pads as an input (constant initializers, as TensorRT wants);
# 25 is the newest that ONNX Runtime 1.32 loads. Every value in between is exported and run in
# ONNX Runtime by the tests.
SUPPORTED_OPSETS = range(11, 26)
DEFAULT_OPSET = 17
