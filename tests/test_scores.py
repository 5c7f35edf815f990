"""Scoring a model over many inputs: large inputs run in parts (a few photos on a CPU, where larger parts are
slower; more on a GPU), so memory does not grow with the batch."""

import torch
import torch.nn as nn

from deepcat.evaluation.scores import FORWARD_PHOTOS, forward_in_parts, forward_rows


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


def test_photos_run_in_parts_and_small_inputs_in_larger_ones():
    torch.manual_seed(0)
    model = Recording()
    photos = torch.randn(10, 3, 224, 224)
    features, logits = forward_in_parts(model, photos)
    whole_features, whole_logits = model.forward(photos)
    assert FORWARD_PHOTOS["cpu"] == 4 and model.seen[:-1] == [4, 4, 2]
    assert torch.allclose(features, whole_features) and torch.allclose(logits, whole_logits, atol=1e-6)
    model.seen.clear()
    forward_in_parts(model, torch.randn(256, 3, 28, 28))  # Fashion-MNIST-sized: 64 times as many a pass
    assert model.seen == [256]


def test_a_gpu_pass_holds_more_photos_than_a_cpu_pass():
    photos = torch.empty(1, 3, 224, 224)
    assert forward_rows(photos, torch.device("cuda")) == 32 and forward_rows(photos, torch.device("cpu")) == 4


def test_a_single_output_comes_back_as_a_tuple():
    (out,) = forward_in_parts(nn.Flatten(), torch.ones(3, 2, 2))
    assert out.shape == (3, 4)
