"""An artifact opened for serving, the part Triton's Python-backend models (`backend`) and the
Ray Serve application (`ray_app`) share: the toolkit's own runtime (`open_runtime`, so what is
served is what was validated), requests' tensors checked, batches run in pieces the runtime takes,
encoded images through the artifact's recipe and the bounded loader, top-k classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import ToolkitError

from ..predictor import Prediction, Predictor
from ..preprocess import EncodedImage
from ..runtimes import RuntimeOptions, backend_of, open_runtime


@dataclass(frozen=True)
class ServingOptions:
    """How a server opens its artifact: the device, the most rows it runs at once, and the backend
    (None: the file's own; "openvino" for an ONNX file on CPU instances) with its precision."""

    device: str = "cpu"
    largest_run: int = 32  # the most rows the runtime is given at once (more gathered: run in pieces)
    backend: str | None = None
    precision: str = "fp32"


class ServedArtifact:
    """The artifact at `path`, opened with `options`; `name` and `labels` for the images route."""

    def __init__(
        self, path: str | Path, options: ServingOptions = ServingOptions(), *, name: str, labels: Path | None = None
    ) -> None:
        self.path, self.name, self.labels = Path(path), name, labels
        backend = options.backend or backend_of(self.path)
        runtime_options = RuntimeOptions(
            device=options.device, buffer_rows=max(options.largest_run, 1), precision=options.precision
        )
        self.runtime = open_runtime(self.path, runtime_options.honoured_by(backend), backend=backend)
        self.limit = self.runtime.batch_range[1] or options.largest_run or None
        self._predictor: Predictor | None = None

    @property
    def predictor(self) -> Predictor:
        """The Predictor of the images route (it needs the file's recipe: opened on first use)."""
        if self._predictor is None:
            self._predictor = Predictor.from_runtime(self.runtime, name=self.name, labels=self.labels)
        return self._predictor

    def warm_up(self) -> None:
        """One batch run before the server says it is ready, so the first request does not pay for it."""
        self.runtime.run(self.runtime.random_input(self.runtime.batch_range[0]))

    def tensor(self, array: np.ndarray) -> np.ndarray:
        """A request's input tensor, checked: its element type is the model's (no silent
        conversion of a wire type), its shape fits, its batch is one the runtime takes."""
        if array.dtype != self.runtime.input_dtype:
            raise ToolkitError(
                f"{self.runtime.input_name} is {array.dtype}; this model takes {self.runtime.input_dtype}"
            )
        return self.runtime.check_input(array)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The runtime on `batch`, in pieces no larger than it takes (a server may gather more
        requests than an engine's batch range holds); a last piece below the smallest batch it
        takes is padded, and the padding's logits dropped."""
        return self.runs(batch)[0]

    def runs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`logits(batch)`, and for each row the batch size of the run it was in (padding
        included): what a server reports as the batch a request ran in."""
        outputs, sizes = [], []
        for piece, count in self.runtime.pieces(batch, self.limit):
            outputs.append(self.runtime.run(piece)[:count])
            sizes += [len(piece)] * count
        return np.concatenate(outputs), np.array(sizes)

    def images(self, encoded: Sequence[bytes]) -> np.ndarray:
        """Encoded JPEG or PNG images as the model's input batch (the artifact's recipe; an empty,
        unreadable or oversized image is an `ImageError` naming it)."""
        if not encoded:
            raise ToolkitError("the request holds no image")
        return np.stack(
            [
                self.predictor.preprocess(EncodedImage(bytes(item), f"image {i} of the request"))
                for i, item in enumerate(encoded)
            ]
        )

    def classify(self, batch: np.ndarray, top_k: int = 5) -> list[Prediction]:
        """Top-k classes of preprocessed images."""
        return self.predictor.from_logits(self.logits(batch), top_k)

    def close(self) -> None:
        self.runtime.close()
