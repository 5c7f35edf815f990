"""Models: deepcat's own (registry), layer stacks from YAML, torchvision and the timm zoo."""

from deepcat.models.create import ModelSpec, classifier_of, create_model, default_preprocess
from deepcat.models.registry import register_model

__all__ = ["ModelSpec", "classifier_of", "create_model", "default_preprocess", "register_model"]
