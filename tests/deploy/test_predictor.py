"""Predictor on ONNX Runtime, checked against PyTorch on the same preprocessed images."""

import threading

import numpy as np
import pytest
import torch

from deploy import ArtifactError
from deploy.predictor import Predictor, softmax
from deploy.preprocess import ImageError, preprocess

IMAGE_NAMES = ["red", "gradient", "gray", "rgba", "palette", "small", "red_jpg"]


def reference(model, batch, top_k):
    with torch.no_grad():
        probabilities = softmax(model(torch.from_numpy(batch)).numpy())
    order = np.argsort(-probabilities, axis=1)[:, :top_k]
    return order, np.take_along_axis(probabilities, order, axis=1)


@pytest.mark.parametrize("kind,spec_name", [("cifar", "cifar"), ("imagenet", "imagenet")])
def test_predictions_match_pytorch(kind, spec_name, models, images):
    paths = [images[name] for name in IMAGE_NAMES]
    with Predictor(models["files"][kind]) as predictor:
        predictions = predictor.predict(paths, top_k=3)
        batch = np.stack([preprocess(p, predictor.spec) for p in paths])
        device = predictor.runtime.device
    order, scores = reference(models[kind], batch, 3)
    assert [p.source for p in predictions] == [str(p) for p in paths]
    # On a CPU ONNX Runtime and PyTorch agree to float rounding; on a GPU cuDNN picks other
    # convolution algorithms (and may use TF32), so the probabilities agree less closely.
    atol = 1e-5 if device == "cpu" else 1e-3
    for prediction, expected_order, expected_scores in zip(predictions, order, scores, strict=True):
        assert prediction.indices == list(expected_order)
        assert np.allclose(prediction.scores, expected_scores, atol=atol)
        assert prediction.scores == sorted(prediction.scores, reverse=True) and prediction.labels is None


def test_fixed_batch_models_pad_the_last_chunk(models, images):
    paths = [images[name] for name in IMAGE_NAMES[:6]]  # 6 images through a batch-4 model: 4 + 2 (+2 padding)
    with Predictor(models["files"]["cifar_b4"]) as fixed, Predictor(models["files"]["cifar"]) as dynamic:
        assert fixed.runtime.batch_range == (4, 4) and fixed.images_per_run == 4
        a, b = fixed.predict(paths), dynamic.predict(paths)
    assert [p.indices for p in a] == [p.indices for p in b]
    assert np.allclose([p.scores for p in a], [p.scores for p in b], atol=1e-6)


def test_fp16_files_predict_like_fp32(models, images):
    # Compare whole probability vectors: with random weights two classes can be nearly tied,
    # and FP16 rounding may legitimately swap them.
    def probabilities(predictions):
        return np.array([[dict(zip(p.indices, p.scores, strict=True))[i] for i in range(10)] for p in predictions])

    paths = [images["red"], images["gradient"], images["rgba"]]
    with Predictor(models["files"]["cifar"]) as fp32:
        expected = probabilities(fp32.predict(paths, top_k=10))
    for kind in ("cifar_fp16", "cifar_fp16_io"):
        with Predictor(models["files"][kind]) as fp16:
            got = probabilities(fp16.predict(paths, top_k=10))
        assert np.abs(got - expected).max() < 0.01 and not np.array_equal(got, expected)


def test_labels_from_a_list_or_a_file(models, images, tmp_path):
    names = [f"kind {i}" for i in range(10)]
    with Predictor(models["files"]["cifar"], labels=names) as predictor:
        (p,) = predictor.predict(images["red"], top_k=2)
    assert p.labels == [names[i] for i in p.indices]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n\n")
    with Predictor(models["files"]["cifar"], labels=tmp_path / "labels.txt") as predictor:
        assert predictor.predict([images["red"]], top_k=2)[0].labels == p.labels
    with pytest.raises(ArtifactError, match="3 labels for a model with 10 classes"):
        Predictor(models["files"]["cifar"], labels=["a", "b", "c"])


def test_top_k_beyond_the_classes_and_one_image(models, images):
    with Predictor(models["files"]["cifar"]) as predictor:
        (p,) = predictor.predict(images["red"], top_k=50)
        assert len(p.indices) == 10 and sorted(p.indices) == list(range(10))
        assert abs(sum(p.scores) - 1) < 1e-9
        assert predictor.predict([]) == []
        with pytest.raises(ImageError, match="not_an_image.jpg"):
            predictor.predict([images["red"], images["not_an_image_jpg"]])


def test_one_predictor_shared_by_threads(models, images):
    paths = [images[name] for name in IMAGE_NAMES]
    with Predictor(models["files"]["imagenet"]) as predictor:
        expected = [p.indices for p in predictor.predict(paths)]
        results, errors = [None] * 6, []

        def work(slot):
            try:
                results[slot] = [p.indices for p in predictor.predict(paths)]
            except Exception as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and all(r == expected for r in results)


def test_backend_choice_is_honoured_or_refused(models, tmp_path):
    onnx_file = models["files"]["cifar"]
    with Predictor(onnx_file, device="cpu") as predictor:
        assert predictor.runtime.backend == "onnxruntime" and predictor.runtime.provider == "cpu"
    with pytest.raises(Exception, match="is not an engine; build one with resnet-build"):
        Predictor(onnx_file, backend="tensorrt")
    with pytest.raises(ArtifactError, match="does not exist"):
        Predictor(tmp_path / "missing.onnx")


def test_a_file_without_metadata_is_refused(models, tmp_path):
    import onnx

    proto = onnx.load(str(models["files"]["cifar"]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ArtifactError, match="carries no input spec"):
        Predictor(tmp_path / "foreign.onnx")
