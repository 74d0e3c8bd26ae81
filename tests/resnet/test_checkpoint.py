import pytest
import torch

import resnet


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_state_dict_keys_shapes_and_order_are_torchvisions(depth, torchvision_reference):
    reference = torchvision_reference["models"][f"resnet{depth}"]
    model = resnet.create(depth)
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    assert ours == reference["state_dict"]
    assert resnet.count_parameters(model) == reference["num_params"]


def _saved(model, tmp_path, layout):
    sd = model.state_dict()
    wrapped = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 90},
        "model": {"model": sd, "optimizer": {"lr": torch.tensor(0.1)}},
        "module": {f"module.{k}": v for k, v in sd.items()},
        "orig_mod": {f"_orig_mod.{k}": v for k, v in sd.items()},
        "nested": {"state_dict": {f"_orig_mod.module.{k}": v for k, v in sd.items()}},
    }[layout]
    path = tmp_path / f"{layout}.pth"
    torch.save(wrapped, path)
    return path


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "module", "orig_mod", "nested"])
def test_checkpoint_layouts_load_and_compute_the_same_function(layout, tmp_path, bn_randomizer):
    source = bn_randomizer(resnet.create(20, "cifar10", shortcut="B")).eval()
    path = _saved(source, tmp_path, layout)
    loaded = resnet.create(20, "cifar10", shortcut="B", weights=path).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), source(x))


def test_torchvision_checkpoint_computes_the_same_function(tmp_path):
    torchvision = pytest.importorskip(
        "torchvision", reason="torchvision is not installed (it does not import beside torch 2.13.0 CPU)"
    )
    reference = torchvision.models.resnet50().eval()
    path = tmp_path / "tv.pth"
    torch.save(reference.state_dict(), path)
    ours = resnet.create(50, weights=path).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


def test_wrong_depth_lists_missing_keys_with_counts(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(resnet.create(18).state_dict(), path)
    with pytest.raises(resnet.CheckpointError) as caught:
        resnet.create(34, weights=path)
    message = str(caught.value)
    assert "missing" in message and "layer1.2.conv1.weight" in message
    assert "more)" in message  # more than five missing keys: a count, not a flood
    assert str(path) in message


def test_wrong_class_count_names_the_shapes_and_the_fix(tmp_path):
    path = tmp_path / "r18_10.pth"
    torch.save(resnet.create(18, num_classes=10).state_dict(), path)
    with pytest.raises(resnet.CheckpointError) as caught:
        resnet.create(18, weights=path)
    message = str(caught.value)
    assert "2 wrong shape" in message and "fc.weight (10, 512) (model: (1000, 512))" in message
    assert "num_classes=10" in message


def test_option_a_checkpoint_into_option_b_model_says_so(tmp_path):
    path = tmp_path / "a.pth"
    torch.save(resnet.create(20, "cifar10", shortcut="A").state_dict(), path)
    with pytest.raises(resnet.CheckpointError, match="shortcut='A'"):
        resnet.create(20, "cifar10", shortcut="B", weights=path)
    with pytest.raises(resnet.CheckpointError, match="unexpected"):
        torch.save(resnet.create(20, "cifar10", shortcut="B").state_dict(), path)
        resnet.create(20, "cifar10", shortcut="A", weights=path)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(resnet.CheckpointError, match="does not exist"):
        resnet.create(18, weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(resnet.CheckpointError, match="is not a PyTorch checkpoint of tensors"):
        resnet.create(18, weights=junk)
    other = tmp_path / "other.pth"
    torch.save({"epoch": 3, "notes": "no weights here"}, other)
    with pytest.raises(resnet.CheckpointError, match="neither a state_dict"):
        resnet.create(18, weights=other)


@pytest.mark.parametrize(
    "depth,dataset,shortcut,classes",
    [(18, "imagenet", "B", 1000), (50, "imagenet", "A", 7), (20, "cifar10", "A", 10), (32, "cifar100", "B", 100)],
)
def test_a_checkpoint_alone_gives_back_its_model(depth, dataset, shortcut, classes, tmp_path, bn_randomizer):
    source = bn_randomizer(resnet.create(depth, dataset, shortcut=shortcut, num_classes=classes)).eval()
    torch.save({"model": source.state_dict()}, tmp_path / "ckpt.pth")
    model = resnet.load_model(tmp_path / "ckpt.pth").eval()
    assert model.architecture == source.architecture
    assert (model.name, model.dataset, model.depth) == (source.name, dataset, depth)
    x = torch.randn(2, 3, model.input_spec.height, model.input_spec.width)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def test_a_foreign_state_dict_is_not_a_resnet(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(resnet.CheckpointError, match="torchvision ResNet layout"):
        resnet.load_model(tmp_path / "other.pth")
