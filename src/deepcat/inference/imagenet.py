"""Cat / dog / neither from an ImageNet classifier, before anyone trains anything.

ImageNet-1k has 118 dog breeds (classes 151-268) and 5 domestic cats (281-285):
their summed probabilities are P(dog) and P(cat); the rest is P(neither).
"""

from __future__ import annotations

import torch

__all__ = ["CAT_CLASSES", "CAT_DOG_NEITHER", "DOG_CLASSES", "cat_dog_neither"]

DOG_CLASSES = range(151, 269)
CAT_CLASSES = range(281, 286)
CAT_DOG_NEITHER = ["cat", "dog", "neither"]


def cat_dog_neither(probs: torch.Tensor) -> torch.Tensor:
    """(B, 1000) ImageNet probabilities -> (B, 3) probabilities of cat, dog, neither."""
    cat = probs[:, CAT_CLASSES.start : CAT_CLASSES.stop].sum(1)
    dog = probs[:, DOG_CLASSES.start : DOG_CLASSES.stop].sum(1)
    return torch.stack([cat, dog, (1 - cat - dog).clamp(min=0)], dim=1)
