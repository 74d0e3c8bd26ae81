"""Shared test helpers. Tests build real models, export real files and run real ONNX Runtime."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

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
    from deploy.artifacts import BatchProfile, EngineEnvironment, EngineManifest, ModelInfo, TensorInfo

    def make(environment=None, **changes):
        info = ModelInfo.from_model(resnet.create(20, "cifar10"), precision="fp16")
        fields = dict(
            engine_file="m.plan",
            engine_sha256="ab" * 32,
            environment=environment
            or EngineEnvironment("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0", "13.0", "580.65"),
            precision="fp16",
            tf32=True,
            profile=BatchProfile(1, 32, 64),
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
