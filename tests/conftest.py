"""Shared test helpers. Tests build real models, export real files and run real ONNX Runtime."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from resnet.spec import IMAGENET, InputSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ci_extras import pytest_make_collect_report, pytest_runtest_makereport  # noqa: E402,F401 - the CI rule's hooks

DATA = Path(__file__).resolve().parent / "data"
README = Path(__file__).resolve().parents[1] / "README.md"


class Readme:
    """The README's code blocks, as the tests that run them read them (tests/test_readme.py the
    tour, tests/deploy/test_serving.py the serving block)."""

    NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")

    def __init__(self, text: str) -> None:
        self.text = text

    def blocks(self, language: str) -> list[str]:
        return re.findall(rf"```{language}\n(.*?)```", self.text, re.S)

    def console(self, index: int) -> list[tuple[str, list[str]]]:
        """(command, the output lines shown under it) of the index-th console block."""
        steps: list[tuple[str, list[str]]] = []
        for line in self.blocks("console")[index].splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif line.strip() and line.strip() != "...":
                steps[-1][1].append(line)
        return steps

    @classmethod
    def shape(cls, line: str) -> str:
        """A line with its numbers (and signs) masked, its spacing folded, a table's rule shortened
        (its widths follow the numbers) and the note a busy machine may add to a load line set
        aside: what must match across runs."""
        line = re.sub(r"-{2,}", "--", line.split("; throughput not stable")[0])
        return " ".join(cls.NUMBER.sub("#", line).split())


@pytest.fixture(scope="session")
def readme() -> Readme:
    return Readme(README.read_text())


class Tour:
    """The README's tour (its first console block), run once for the whole test run: each command
    in `folder` (a fresh one, with this repository's `tests/` beside it, as at the repository root),
    with what it printed. tests/test_readme.py checks it; the compare and serving blocks start from
    the files it wrote, as the README's reader does."""

    def __init__(self, folder: Path, readme: Readme) -> None:
        import os
        import sys

        self.folder = folder
        (folder / "tests").symlink_to(README.parent / "tests")
        self.environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        self.environment["PYTHONPATH"] = str(README.parent)
        self.steps = []  # (command, the lines the README shows, the finished process)
        for command, shown in readme.console(0):
            if command.startswith(". "):  # activating the environment: the tests run inside it
                continue
            done = self.run(command)
            self.steps.append((command, shown, done))
            if done.returncode != 0:
                break

    def run(self, command: str):
        import subprocess

        return subprocess.run(
            command, shell=True, cwd=self.folder, env=self.environment, capture_output=True, text=True
        )


@pytest.fixture(scope="session")
def tour(tmp_path_factory, readme) -> Tour:
    return Tour(tmp_path_factory.mktemp("tour"), readme)


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters.

    A freshly built model has running_mean 0 and running_var 1, which makes BatchNorm folding
    (export) invisible; tests that compare exported graphs with PyTorch use this instead. The
    BatchNorm that ends each residual branch gets a small scale, as in a trained network, so
    that activations stay finite even through ResNet-1202's 600 blocks (with torch's default
    statistics its eval-mode logits overflow to NaN).
    """
    from resnet import BasicBlock, Bottleneck

    generator = torch.Generator().manual_seed(seed)
    branch_ends = {id(m.last_bn) for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                gamma = 0.2 if id(module) in branch_ends else 1.0
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.weight.copy_((torch.rand(n, generator=generator) * 0.5 + 0.5) * gamma)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


# ImageNet models at 64x64 where the input size is not the point: the same graph (stem, bottlenecks,
# strides, adaptive pooling: 64 -> 2x2 before the pooling) at about a twelfth of 224x224's work.
SMALL_IMAGENET = InputSpec(64, 64, IMAGENET.mean, IMAGENET.std, 1000, resize=73)


@pytest.fixture(scope="session")
def small_imagenet():
    """`small_imagenet(depth, **options)`: a registered ImageNet ResNet taking 64x64 inputs."""
    import resnet

    return lambda depth, **kwargs: resnet.create(depth, "imagenet", input_spec=SMALL_IMAGENET, **kwargs)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random state, so a failure reproduces."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def bn_randomizer():
    return randomize_batchnorm


@pytest.fixture(scope="session")
def torchvision_reference() -> dict:
    # torchvision 0.29.1's state_dict layouts (tests/data/README.md says how it was made).
    return json.loads((DATA / "torchvision_resnet_state_dicts.json").read_text())


@pytest.fixture
def engine_manifest():
    """A factory of plausible engine manifests (an FP16 CIFAR ResNet-20 built on an H100)."""
    import resnet
    from deploy.artifacts import BatchRange, EngineEnvironment, EngineManifest, ModelInfo, TensorInfo

    def make(environment=None, **changes):
        info = ModelInfo.from_model(resnet.create(20, "cifar10"), precision="fp16")
        fields = dict(
            engine_file="m.plan",
            engine_sha256="ab" * 32,
            environment=environment
            or EngineEnvironment("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0", "13.0", "580.65"),
            precision="fp16",
            tf32=True,
            batches=BatchRange(1, 32, 64),
            inputs=[TensorInfo("input", "float32", (None, 3, 32, 32))],
            outputs=[TensorInfo("logits", "float32", (None, 10))],
            model=info,
            source_onnx={"file": "resnet20_cifar10_fp16.onnx", "sha256": "cd" * 32},
            build={"seconds": 12.5, "flags": ["STRONGLY_TYPED"]},
        )
        fields.update(changes)
        return EngineManifest(**fields)

    return make


DIGITS = DATA / "digits"  # the trained model and its data (tools/train_digits.py; tests/data/README.md)


@pytest.fixture(scope="session")
def digits() -> dict:
    """The trained digits ResNet-20, its held-out images (ImageFolder), its calibration images
    and the record of its training."""
    return {
        "checkpoint": DIGITS / "resnet20_digits.pth",
        "heldout": DIGITS / "heldout",
        "calibration": DIGITS / "calibration",
        "record": json.loads((DIGITS / "digits.json").read_text()),
    }


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory, digits) -> dict:
    """The digits model exported once for the whole run, unvalidated (export's own tests validate):
    "fp32", "fp16" (FP32 I/O), "fp16_io" (FP16 I/O), "static" (a fixed batch of 4), and the INT8
    forms "cpu" and "tensorrt" calibrated on 64 images. Shared: copy a file before changing it."""
    import resnet
    from export import export_onnx
    from export.quantize import Int8Options

    folder = tmp_path_factory.mktemp("digits-files")
    model = resnet.load_model(digits["checkpoint"])
    files = {name: folder / f"d_{name}.onnx" for name in ("fp32", "fp16", "fp16_io", "static", "cpu", "tensorrt")}
    export_onnx(model, files["fp32"], validate=False)
    export_onnx(model, files["fp16"], precision="fp16", validate=False)
    export_onnx(model, files["fp16_io"], precision="fp16", io_dtype="fp16", validate=False)
    export_onnx(model, files["static"], batch=4, dynamic_batch=False, validate=False)
    for target in ("cpu", "tensorrt"):
        int8 = Int8Options(digits["calibration"], target=target, size=64)
        export_onnx(model, files[target], precision="int8", int8=int8, validate=False)
    return files
