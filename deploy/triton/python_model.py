"""The Triton Python-backend models a `--triton-backend python` repository imports (its `model.py` is one
line): the toolkit's own runtime runs inside the server, so what is served is what was validated.

- `LogitsModel`: the artifact's own input and output (`deploy.runtimes.open_runtime`: ONNX Runtime
  on the CPU, or on CUDA for a `KIND_GPU` instance; TensorRT for an engine). The requests of one
  execution (Triton's dynamic batcher gathers them) run as one batch; each is checked first
  (its tensor is there, shape, element type, batch size) and a bad one gets an error of its own
  while the others are answered.
- `ImagesModel`: `image`, one encoded JPEG or PNG per batch item, in; `indices`, `scores` and
  `labels` (the top-k classes, best first) out. Images go through the artifact's own recipe and
  the bounded loader (`deploy.preprocess`): a bomb or an unreadable image is an error for its
  request, not a crash of the instance.

Tensors cross the backend boundary through the backend's NumPy bridge (`as_numpy()`,
`Tensor(name, array)`) where the server's Python has NumPy 1, and through DLPack with torch where
it has NumPy 2: there Triton 2.51's bridge reads zeros and sends nothing. (NumPy's own DLPack does
not fit this backend: it names a consumed capsule "used_dlpack", not the standard "used_dltensor",
and a stub that exchanges capsules with NumPy dies.) Strings have no DLPack form, so `ImagesModel`
refuses to start under NumPy 2 rather than answer wrongly. So with NumPy 1, as `nvidia-pytriton`
requires, serving imports no torch.

`triton_python_backend_utils` exists only inside the server, so it is imported in the methods:
this module imports anywhere (and the tests read it there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.errors import ToolkitError

from ..shipping.served import ServedArtifact, ServingOptions


def _utils():
    import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

    return pb_utils


NUMPY_BRIDGE_WORKS = int(np.__version__.split(".")[0]) < 2  # see the module docstring


def to_numpy(tensor) -> np.ndarray:
    """A request's tensor as a host array (the backend gives instances CPU tensors)."""
    if NUMPY_BRIDGE_WORKS:
        return tensor.as_numpy()
    import torch.utils.dlpack

    return torch.utils.dlpack.from_dlpack(tensor.to_dlpack()).cpu().numpy()


def from_numpy(name: str, array: np.ndarray):
    """A response tensor from a host array."""
    array = np.ascontiguousarray(array)
    if NUMPY_BRIDGE_WORKS:
        return _utils().Tensor(name, array)
    import torch
    import torch.utils.dlpack

    return _utils().Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(torch.from_numpy(array)))


def error_response(message: str):
    pb_utils = _utils()
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


class _PythonBackendModel:
    """Opens the artifact named by the config's `artifact` parameter, on the instance's device."""

    def initialize(self, args: dict) -> None:
        self.config = json.loads(args["model_config"])
        self.folder = Path(args["model_repository"])
        parameters = {k: v["string_value"] for k, v in self.config.get("parameters", {}).items()}
        device = "cuda" if args.get("model_instance_kind") == "GPU" else "cpu"
        if device == "cuda" and int(args.get("model_instance_device_id", 0)) != 0:
            raise _utils().TritonModelException(
                f"an instance on GPU {args['model_instance_device_id']}: the toolkit's runtimes run on the first GPU "
                "only; start the server with one GPU visible (CUDA_VISIBLE_DEVICES=N)"
            )
        options = ServingOptions(
            device=device,
            largest_run=max(self.config["max_batch_size"], 1),  # Triton's batches, whole
            backend=parameters.get("runtime"),  # "openvino", or None: the file's own backend
            precision=parameters.get("precision", "fp32"),
        )
        labels = self.folder / "labels.txt"
        self.served = ServedArtifact(
            self.folder / args["model_version"] / parameters["artifact"],
            options,
            name=self.config["name"],
            labels=labels if labels.is_file() else None,
        )
        self.parameters = parameters
        if not NUMPY_BRIDGE_WORKS:
            import torch.utils.dlpack  # noqa: F401 - before the model says it is ready, as the first run

        self.served.warm_up()

    def finalize(self) -> None:
        self.served.close()

    def execute(self, requests: list) -> list:
        """Each request checked (`_input`), the good ones run as one batch (`_run`), each answered
        with its own part (`_response`); a bad request gets an error of its own."""
        responses, batches, owners = [None] * len(requests), [], []
        for index, request in enumerate(requests):
            try:
                batches.append(self._input(request))
                owners.append(index)
            except ToolkitError as error:  # an unreadable image (ImageError) too
                responses[index] = error_response(str(error))
        if batches:
            try:
                results = self._run(np.concatenate(batches))
            except ToolkitError as error:
                return [r if r is not None else error_response(str(error)) for r in responses]
            start = 0
            for index, batch in zip(owners, batches, strict=True):
                responses[index] = self._response(results[start : start + len(batch)])
                start += len(batch)
        return responses


class LogitsModel(_PythonBackendModel):
    """The artifact's own tensors (see the module docstring)."""

    def _input(self, request) -> np.ndarray:
        name = self.served.runtime.input_name
        tensor = _utils().get_input_tensor_by_name(request, name)
        if tensor is None:
            raise ToolkitError(f"the request has no tensor {name!r}")
        return self.served.tensor(to_numpy(tensor))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.served.logits(batch)

    def _response(self, logits: np.ndarray):
        return _utils().InferenceResponse(output_tensors=[from_numpy(self.served.runtime.output_name, logits)])


class ImagesModel(_PythonBackendModel):
    """Encoded images in, the top classes out (see the module docstring)."""

    def initialize(self, args: dict) -> None:
        if not NUMPY_BRIDGE_WORKS:
            raise _utils().TritonModelException(
                f"the images model reads strings through Triton's NumPy bridge, which is wrong under NumPy "
                f"{np.__version__}; install numpy<2 in the server's Python environment"
            )
        super().initialize(args)
        self.served.predictor  # noqa: B018 - the recipe is read before the model says it is ready
        self.top_k = int(self.parameters.get("top_k", 5))

    def _run(self, batch: np.ndarray) -> list:
        return self.served.classify(batch, top_k=self.top_k)

    def _input(self, request) -> np.ndarray:
        tensor = _utils().get_input_tensor_by_name(request, "image")
        if tensor is None:
            raise ToolkitError("the request has no tensor 'image'")
        return self.served.images(list(tensor.as_numpy().reshape(-1)))

    def _response(self, predictions: list):
        indices = np.array([p.indices for p in predictions], dtype=np.int64)
        scores = np.array([p.scores for p in predictions], dtype=np.float32)
        names = [p.labels or [str(i) for i in p.indices] for p in predictions]
        labels = np.array([[name.encode("utf-8") for name in row] for row in names], dtype=object)
        pb_utils = _utils()
        tensors = [from_numpy("indices", indices), from_numpy("scores", scores), pb_utils.Tensor("labels", labels)]
        return pb_utils.InferenceResponse(output_tensors=tensors)
