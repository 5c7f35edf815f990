"""Scoring a model over many inputs: large inputs run in parts, so memory does not grow with the batch."""

import torch
import torch.nn as nn

from deepcat.evaluation.scores import FORWARD_ELEMENTS, forward_in_parts


class Recording(nn.Module):
    """Features and logits, as `WithFeatures` gives them, and the size of every batch it was given."""

    def __init__(self):
        super().__init__()
        self.seen: list[int] = []
        self.linear = nn.Linear(3, 4)

    def forward(self, x):
        self.seen.append(len(x))
        features = x.mean((2, 3))
        return features, self.linear(features)


def test_photos_run_in_parts_and_small_inputs_whole():
    torch.manual_seed(0)
    model = Recording()
    photos = torch.randn(80, 3, 224, 224)
    features, logits = forward_in_parts(model, photos)
    whole_features, whole_logits = model.forward(photos)
    assert model.seen[:-1] == [32, 32, 16] and sum(model.seen[:-1]) == 80
    assert torch.allclose(features, whole_features) and torch.allclose(logits, whole_logits, atol=1e-6)
    model.seen.clear()
    forward_in_parts(model, torch.randn(256, 3, 28, 28))  # Fashion-MNIST-sized: one pass
    assert model.seen == [256] and 256 * 3 * 28 * 28 <= FORWARD_ELEMENTS


def test_a_single_output_comes_back_as_a_tuple():
    (out,) = forward_in_parts(nn.Flatten(), torch.ones(3, 2, 2))
    assert out.shape == (3, 4)
