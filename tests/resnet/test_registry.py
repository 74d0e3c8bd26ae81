import pytest
import torch

import resnet

IMAGENET_PARAMETERS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
CIFAR_PARAMETERS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962, 1202: 19_421_274}
# torchvision's weight tables ("GFLOPS", which are multiply-accumulates) at 224x224.
IMAGENET_GMACS = {18: 1.814, 34: 3.664, 50: 4.089, 101: 7.801, 152: 11.514}


@pytest.mark.parametrize("depth,expected", IMAGENET_PARAMETERS.items())
def test_imagenet_parameter_counts_are_the_published_ones(depth, expected):
    assert resnet.count_parameters(resnet.create(depth)) == expected


@pytest.mark.parametrize("depth,expected", CIFAR_PARAMETERS.items())
def test_cifar_parameter_counts_are_the_published_ones(depth, expected):
    model = resnet.create(depth, "cifar10")
    assert model.architecture.shortcut == "A"
    assert resnet.count_parameters(model) == expected


@pytest.mark.parametrize("depth,gmacs", IMAGENET_GMACS.items())
def test_macs_match_torchvision_tables(depth, gmacs):
    macs, output_shape = resnet.count_macs(resnet.create(depth), (1, 3, 224, 224))
    assert round(macs / 1e9, 3) == gmacs
    assert output_shape == (1, 1000)


def test_summary_reports_the_input_size_and_keeps_training_mode():
    model = resnet.create(20, "cifar10")
    summary = resnet.summarize(model)
    assert summary.input_shape == (1, 3, 32, 32)
    assert summary.output_shape == (1, 10)
    assert summary.depth == 20 and summary.name == "resnet20_cifar10"
    assert model.training


def test_defaults_follow_the_family():
    assert resnet.create(18).architecture.shortcut == "B"
    assert resnet.create(20, "cifar10").architecture.shortcut == "A"
    assert resnet.create(20, "cifar100").fc.out_features == 100
    assert resnet.create(50).input_spec == resnet.IMAGENET
    assert resnet.create(56, "cifar10").input_spec == resnet.CIFAR10


@pytest.mark.parametrize("depth,dataset", [(18, "imagenet"), (50, "imagenet"), (20, "cifar10")])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_any_depth_builds_with_either_shortcut(depth, dataset, shortcut):
    model = resnet.create(depth, dataset, shortcut=shortcut, num_classes=7).eval()
    spec = model.input_spec
    assert spec.num_classes == 7
    with torch.no_grad():
        out = model(torch.randn(2, 3, spec.height, spec.width))
    assert out.shape == (2, 7)
    has_projection = any(isinstance(m, resnet.ShortcutB) for m in model.modules())
    has_option_a = any(isinstance(m, resnet.ShortcutA) for m in model.modules())
    assert (has_projection, has_option_a) == (shortcut == "B", shortcut == "A")


def test_depth_is_derived_from_the_architecture():
    for depth, dataset in resnet.registered_models():
        entry = resnet.model_entry(depth, dataset)
        assert resnet.Architecture(entry.block, entry.layers, entry.widths, entry.family, "B", 10).depth == depth


def test_zero_init_residual_zeroes_the_last_batchnorm_of_every_block():
    model = resnet.create(50, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, (resnet.BasicBlock, resnet.Bottleneck))]
    assert len(blocks) == 16
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in blocks)
    assert torch.count_nonzero(resnet.create(50).layer1[0].bn3.weight) == 256


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(depth=51), ["51", "18, 34, 50, 101, 152"]),
        (dict(depth=50, dataset="cifar10"), ["50", "20, 32, 44, 56, 110, 1202"]),
        (dict(depth=50, dataset="mnist"), ["mnist", "imagenet, cifar10, cifar100"]),
        (dict(depth=50, shortcut="C"), ["'C'", "A, B"]),
        (dict(depth=50, num_classes=0), ["num_classes", "at least 1", "0"]),
        (dict(depth=50, num_classes=2.5), ["num_classes", "2.5"]),
    ],
)
def test_bad_arguments_name_the_valid_choices(kwargs, words):
    with pytest.raises(resnet.ToolkitError) as caught:
        resnet.create(**kwargs)
    for word in words:
        assert word in str(caught.value)
    assert isinstance(caught.value, ValueError)  # callers can catch it as a ValueError


def test_input_spec_override_and_resolution_change():
    spec = resnet.IMAGENET.with_size(288, 288)
    assert (spec.height, spec.width, spec.resize) == (288, 288, 329)
    model = resnet.create(18, input_spec=spec, num_classes=5)
    assert model.input_spec.height == 288 and model.input_spec.num_classes == 5
    assert resnet.InputSpec.from_dict(model.input_spec.to_dict()) == model.input_spec
    with pytest.raises(resnet.ToolkitError, match="std"):
        resnet.InputSpec(32, 32, (0, 0, 0), (1, 0, 1), 10)


@pytest.mark.parametrize("depth,dataset", resnet.registered_models())
def test_architecture_lists_the_blocks_that_need_a_shortcut(depth, dataset):
    model = resnet.create(depth, dataset, shortcut="A")
    built = [
        (name, module.stride, module.in_channels, module.out_channels)
        for name, module in model.named_modules()
        if isinstance(module, resnet.ShortcutA)
    ]
    expected = [(f"{name}.downsample", *rest) for name, *rest in model.architecture.shortcut_blocks()]
    assert built == expected
