"""The `unknown` scores on known cases: features are the classifier's input, kNN and Mahalanobis rank
training-like features above others, and the score computed inside the exported graph equals PyTorch's."""

import numpy as np
import pytest
import torch

from deepcat.errors import DeepcatError
from deepcat.inference.unknown_score import SCORES, WithFeatures, classifier_layer, fit_score
from deepcat.models.small_cnn import SmallCNN

pytestmark = pytest.mark.precision  # parity and calibration through bf16 or fp32 training: CI runs both


def test_features_are_the_classifier_layers_input_in_one_pass():
    model = SmallCNN(4, width=8, flip_average=True).eval()
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        features, logits = WithFeatures(model, classifier_layer(model, classes=4))(x)
        expected = (model.features(x) + model.features(x.flip(-1))) / 2  # the test-time flip averages features
        assert torch.allclose(features, expected) and torch.allclose(logits, model(x))


def test_feature_scores_rank_training_like_inputs_above_others():
    rng = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=rng) * 4
    labels = torch.arange(3).repeat(200)
    train = centres[labels] + torch.randn(600, 16, generator=rng)
    known = centres[torch.arange(3).repeat(50)] + torch.randn(150, 16, generator=rng)
    far = torch.randn(150, 16, generator=rng) * 4 + 10
    logits = torch.zeros(150, 3)
    for kind in ("knn", "mahalanobis"):
        score = fit_score(kind, train, labels)
        with torch.no_grad():
            assert score(known, logits).min() > score(far, logits).max(), kind
        assert score.feature_dim == 16


def test_the_knn_bank_is_bounded():
    from deepcat.inference.unknown_score import BANK_FLOATS

    score = fit_score("knn", torch.randn(20000, 512), torch.zeros(20000, dtype=torch.long))
    assert score.bank.numel() <= BANK_FLOATS and np.allclose(score.bank.norm(dim=1).numpy(), 1, atol=1e-5)


@pytest.mark.parametrize("kind", SCORES)
@pytest.mark.parametrize("runtime", ["onnx", pytest.param("litert", marks=pytest.mark.toolchain)])
def test_every_score_exports_inside_the_graph_with_any_batch_size(tmp_path, kind, runtime):
    from deepcat.exporting.graph import Deployable, metadata
    from deepcat.exporting.onnx_formats import export_onnx
    from deepcat.inference.exported import load_exported
    from deepcat.inputs.image import Preprocess

    if runtime == "litert":
        pytest.importorskip("litert_torch")  # an optional extra; the test extra has it
        from deepcat.exporting.litert_files import write_litert as write
    else:
        write = export_onnx

    torch.manual_seed(0)  # the same untrained network whichever tests ran before
    pre = Preprocess(8, 8)
    model = SmallCNN(4, width=8).eval()
    stages = WithFeatures(model, None, model.ood_stages)
    with torch.no_grad():  # more training rows than feature dimensions (192 for `layers`): a well-posed fit
        train = stages(torch.rand(400, 3, 8, 8) * 255)[0] if kind == "layers" else torch.randn(400, 64)
    score = fit_score(kind, train, torch.arange(4).repeat(100), stages=stages.stages, sizes=stages.sizes)
    net = Deployable(model, pre, unknown=score)
    meta = metadata(name="m", classes=list("abcd"), pre=pre, version="1", source="test")
    if runtime == "litert" and kind == "knn":  # its top-k becomes an operation LiteRT's interpreter lacks
        with pytest.raises(DeepcatError, match="LiteRT's interpreter cannot run STABLEHLO_SORT of m.tflite"):
            write(net, torch.rand(2, 3, 8, 8) * 255, tmp_path / "m.tflite", meta)
        return
    path = write(net, torch.rand(2, 3, 8, 8) * 255, tmp_path / ("m.tflite" if runtime == "litert" else "m.onnx"), meta)
    for batch in (1, 5):
        pixels = np.random.default_rng(batch).uniform(0, 255, (batch, 3, 8, 8)).astype(np.float32)
        _, exported = load_exported(path).infer(pixels)
        with torch.no_grad():
            expected = net(torch.from_numpy(pixels))[1].numpy()
        # `layers` is standardised (unit spread on the training features), and an untrained network's features
        # barely vary, so its whitening magnifies float32 noise (1e-2 of the spread, 1e-3 of scores far out here;
        # a trained Fashion-MNIST model agrees to 5e-5 of a spread of 12; tests/test_calibration.py checks a
        # trained one end to end)
        close = {"rtol": 1e-3, "atol": 1e-2} if kind == "layers" else {"rtol": 0, "atol": 1e-4}
        assert exported.shape == (batch,) and np.allclose(exported, expected, **close)
