"""The cookbook's steps (docs/cookbook.md), one shape flow at a time."""

import pytest
import torch
from torch import nn

import resnet
from resnet import BasicBlock, Bottleneck, ShortcutA, ShortcutB, make_shortcut


def test_step1_and_2_option_a_slices_then_pads_channels():
    x = torch.randn(32, 64, 56, 56)
    shortcut = ShortcutA(64, 128, stride=2)
    assert x[:, :, ::2, ::2].shape == (32, 64, 28, 28)  # step 1 alone
    assert shortcut(x).shape == (32, 128, 28, 28)  # step 2
    assert sum(p.numel() for p in shortcut.parameters()) == 0
    assert len(shortcut.state_dict()) == 0


def test_step3_option_b_projects_with_stride():
    shortcut = ShortcutB(64, 128, stride=2)
    assert shortcut(torch.randn(32, 64, 56, 56)).shape == (32, 128, 28, 28)
    conv, bn = shortcut
    assert conv.kernel_size == (1, 1) and conv.stride == (2, 2) and conv.bias is None
    assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == 128


def test_step4_main_convolution_is_3x3_padding_1_without_bias():
    conv = resnet.conv3x3(64, 128, stride=2)
    assert conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.bias is None
    assert conv(torch.randn(32, 64, 56, 56)).shape == (32, 128, 28, 28)
    assert resnet.conv3x3(64, 64)(torch.randn(1, 64, 56, 56)).shape == (1, 64, 56, 56)


@pytest.mark.parametrize(
    "stride,cin,cout,kind,expected",
    [
        (1, 64, 64, "A", nn.Identity),
        (1, 64, 64, "B", nn.Identity),
        (2, 64, 128, "A", ShortcutA),
        (2, 64, 128, "B", ShortcutB),
        (1, 64, 256, "A", ShortcutA),  # channel change alone (Bottleneck stage 1)
        (1, 64, 256, "B", ShortcutB),
        (2, 64, 64, "B", ShortcutB),  # stride alone
    ],
)
def test_step5_shortcut_choice_at_construction(stride, cin, cout, kind, expected):
    shortcut = make_shortcut(kind, cin, cout, stride)
    assert type(shortcut) is expected
    out = shortcut(torch.randn(2, cin, 8, 8))
    assert out.shape == (2, cout, 8 // stride, 8 // stride)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_step6_forward_adds_the_shortcut_before_the_final_relu(shortcut, bn_randomizer):
    block = bn_randomizer(BasicBlock(64, 128, stride=2, shortcut=shortcut)).eval()
    x = torch.randn(4, 64, 16, 16)
    with torch.no_grad():
        main = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        expected = torch.relu(main + block.downsample(x))
        assert torch.equal(block(x), expected)
        # Not relu(main) + shortcut: that would let negative shortcut values through.
        assert not torch.allclose(block(x), torch.relu(main) + block.downsample(x))
    assert block(x).shape == (4, 128, 8, 8)


def test_bottleneck_expands_by_4_with_the_stride_on_the_3x3():
    block = Bottleneck(256, 128, stride=2)
    assert (block.conv1.stride, block.conv2.stride, block.conv3.stride) == ((1, 1), (2, 2), (1, 1))
    assert block.conv2.kernel_size == (3, 3) and block.conv1.kernel_size == (1, 1)
    assert block(torch.randn(2, 256, 56, 56)).shape == (2, 512, 28, 28)


def test_step7_imagenet_stem_224_to_56():
    model = resnet.create(18).eval()
    x = torch.randn(32, 3, 224, 224)
    with torch.no_grad():
        conv = model.conv1(x)
        assert conv.shape == (32, 64, 112, 112)
        pooled = model.maxpool(model.relu(model.bn1(conv)))
    assert pooled.shape == (32, 64, 56, 56)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)


def test_step7_cifar_stem_keeps_32():
    model = resnet.create(20, "cifar10").eval()
    with torch.no_grad():
        stem = model.maxpool(model.relu(model.bn1(model.conv1(torch.randn(32, 3, 32, 32)))))
    assert stem.shape == (32, 16, 32, 32)
    assert isinstance(model.maxpool, nn.Identity)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
def test_step8_stages_double_channels_and_halve_size(depth, channels):
    model = resnet.create(depth).eval()
    x = torch.randn(2, 64, 56, 56)
    sizes = []
    with torch.no_grad():
        for stage in model.stages:
            x = stage(x)
            sizes.append(tuple(x.shape))
    assert sizes == [(2, c, 56 // 2**i, 56 // 2**i) for i, c in enumerate(channels)]
    # The in_channels update after the first block: later blocks take the expanded width.
    assert model.layer2[1].conv1.in_channels == channels[1]


def test_step9_head_pools_flattens_and_classifies():
    model = resnet.create(18)
    features = torch.randn(32, 512, 7, 7)
    pooled = model.avgpool(features)
    assert pooled.shape == (32, 512, 1, 1)
    flat = torch.flatten(pooled, 1)
    assert flat.shape == (32, 512)
    assert model.fc(flat).shape == (32, 1000)
    # Any spatial size pools to 1x1.
    assert model.avgpool(torch.randn(1, 512, 3, 5)).shape == (1, 512, 1, 1)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("cin,cout", [(16, 32), (32, 64), (64, 128), (64, 256), (8, 8)])
def test_shortcut_a_is_its_definition(stride, cin, cout):
    x = torch.randn(3, cin, 12, 10, requires_grad=True)
    out = ShortcutA(cin, cout, stride)(x)
    assert out.shape == (3, cout, -(-12 // stride), -(-10 // stride))
    assert torch.equal(out[:, :cin], x[:, :, ::stride, ::stride])
    assert torch.count_nonzero(out[:, cin:]) == 0
    out.sum().backward()
    expected_grad = torch.zeros_like(x)
    expected_grad[:, :, ::stride, ::stride] = 1
    assert torch.equal(x.grad, expected_grad)


def test_shortcut_a_keeps_dtype_and_refuses_fewer_channels():
    x = torch.randn(1, 4, 4, 4, dtype=torch.float64)
    assert ShortcutA(4, 8, 2)(x).dtype == torch.float64
    assert ShortcutA(4, 8, 2)(x.half()).dtype == torch.float16
    with pytest.raises(resnet.ToolkitError, match="only add channels"):
        ShortcutA(8, 4, 1)
