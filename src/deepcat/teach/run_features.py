"""Features from a run you trained: what enters its classifier layer, for `deepcat label DATA --model RUN`. A run
trained on data like DATA's (spoken words for clips of words: `deepcat train spoken-commands`; your last model
for the next batch of photos) gives the page's quick head features that already separate such inputs, where no
pretrained model ships (sound) or ImageNet's are the wrong ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deepcat.errors import DeepcatError
from deepcat.teach.features import Embedding, read_each

__all__ = ["BATCH", "RunFeatures"]

BATCH = 32  # inputs per forward pass


class RunFeatures:
    """The features `run`'s network computes for each input, one forward pass per batch (nothing cached on disk:
    a run's own network is usually small). `kind` is the folder's kind of input, which the run must share."""

    def __init__(self, run: str | Path, kind: str):
        from deepcat.inference.torch_model import load_run
        from deepcat.inference.unknown_score import WithFeatures, classifier_layer

        self.classifier = load_run(run)
        if self.classifier.kind.name != kind:
            raise DeepcatError(
                f"{run} was trained on {self.classifier.kind.name} inputs and this folder holds {kind} inputs: "
                f"give --model a run trained on {kind} inputs"
            )
        head = classifier_layer(self.classifier.model, classes=len(self.classifier.classes))
        if head is None:
            raise DeepcatError(f"{run}'s network ends in no linear layer a class: its features cannot be read")
        self.tapped = WithFeatures(self.classifier.model, head)  # the classifier layer's input, in one pass
        self.width = head.in_features

    @torch.no_grad()
    def features(self, paths: Sequence[str | Path], *, progress: bool = False) -> Embedding:
        """One row per path (`Embedding`): the input of the run's classifier layer; unreadable inputs in `bad`."""
        files = [Path(p) for p in paths]
        kind, transform = self.classifier.kind, self.classifier.transform
        tensors, ok, bad = read_each(files, lambda path: transform(kind.read(str(path))))
        found = [self.tapped(torch.stack(tensors[i : i + BATCH]))[0] for i in range(0, len(tensors), BATCH)]
        features = np.zeros((len(files), self.width), np.float32)
        if found:
            features[ok] = torch.cat(found).numpy()
        return Embedding(files, features, ok, bad)
