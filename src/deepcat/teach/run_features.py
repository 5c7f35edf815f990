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
from deepcat.models.create import classifier_of
from deepcat.teach.features import Embedding

__all__ = ["BATCH", "RunFeatures"]

BATCH = 32  # inputs per forward pass


class RunFeatures:
    """The features `run`'s network computes for each input, one forward pass per batch (nothing cached on disk:
    a run's own network is usually small). `kind` is the folder's kind of input, which the run must share."""

    def __init__(self, run: str | Path, kind: str):
        from deepcat.inference.torch_model import load_run

        self.classifier = load_run(run)
        if self.classifier.kind.name != kind:
            raise DeepcatError(
                f"{run} was trained on {self.classifier.kind.name} inputs and this folder holds {kind} inputs: "
                f"give --model a run trained on {kind} inputs"
            )

    @torch.no_grad()
    def features(self, paths: Sequence[str | Path], *, progress: bool = False) -> Embedding:
        """One row per path (`Embedding`): the input of the run's classifier layer; unreadable inputs in `bad`."""
        files = [Path(p) for p in paths]
        tensors, ok, bad = [], np.zeros(len(files), bool), []
        for i, path in enumerate(files):
            try:
                tensors.append(self.classifier.transform(self.classifier.kind.read(str(path))))
                ok[i] = True
            except Exception as e:  # a corrupt input is listed by the page, never raised
                bad.append((path, str(e).removeprefix(f"{path}: ")))
        captured: list[torch.Tensor] = []
        head = classifier_of(self.classifier.model)
        hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0].flatten(1).float()))
        try:
            for start in range(0, len(tensors), BATCH):
                self.classifier.model(torch.stack(tensors[start : start + BATCH]))
        finally:
            hook.remove()
        width = captured[0].shape[1] if captured else 1
        features = np.zeros((len(files), width), np.float32)
        if captured:
            features[ok] = torch.cat(captured).numpy()
        return Embedding(files, features, ok, bad)
