"""Why the model decided: Grad-CAM (Selvaraju et al., 2017) heatmaps over the image.

A short implementation with hooks rather than the `grad-cam` package: that package pulls in
OpenCV, which needs system GL libraries on a server, for what is twenty lines here.

The target layer is found, not configured: for CNNs the last layer whose output is still a
spatial map (B, C, H, W); for ViTs (timm's VisionTransformer and friends) the last block's
tokens, reshaped to their grid after dropping the class/register tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from deepcat.data.sources import Samples
from deepcat.errors import DeepcatError
from deepcat.inputs import Preprocessing

__all__ = ["Explanation", "explain_run", "grad_cam", "overlay", "save_explanations", "target_layer", "worst_mistakes"]


@dataclass
class Explanation:
    source: str
    label: str  # the class explained
    probability: float  # its calibrated probability
    predicted: str
    heatmap: np.ndarray  # (H, W) in 0..1, at the model's input size
    image: Image.Image  # the preprocessed crop the model saw


def target_layer(model: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int | None]:
    """(module, prefix tokens): the last spatial feature map, or a ViT's last block (tokens)."""
    blocks = getattr(model, "blocks", None)
    if hasattr(model, "num_prefix_tokens") and isinstance(blocks, nn.Sequential | nn.ModuleList):
        # the last block's attention input: with class-token pooling, that block's own patch outputs never
        # reach the logits (zero gradient); its normalised input does, through attention
        return getattr(blocks[-1], "norm1", blocks[-1]), int(cast(Any, model).num_prefix_tokens)
    outputs: list[tuple[nn.Module, torch.Size]] = []
    hooks = [
        m.register_forward_hook(lambda m, _, out: outputs.append((m, out.shape)) if torch.is_tensor(out) else None)
        for m in model.modules()
        if m is not model
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    spatial = [m for m, shape in outputs if len(shape) == 4 and shape[-1] > 1 and shape[-2] > 1]
    if not spatial:
        raise DeepcatError(f"{type(model).__name__} has no spatial feature map to explain")
    return spatial[-1], None


def _as_map(activation: torch.Tensor, prefix: int | None) -> torch.Tensor:
    if prefix is None:
        return activation
    tokens = activation[:, prefix:]  # (B, N, D) -> (B, D, h, w)
    side = int(math.isqrt(tokens.shape[1]))
    if side * side != tokens.shape[1]:
        raise DeepcatError(f"cannot arrange {tokens.shape[1]} tokens in a square grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)


def grad_cam(
    model: nn.Module, batch: torch.Tensor, target: int | Sequence[int] | None = None, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (B, H, W) in 0..1 for class `target` (default: each image's predicted class), and probabilities."""
    model.eval()
    layer, prefix = target_layer(model, batch[:1])
    saved: dict[str, torch.Tensor] = {}

    def keep(_: nn.Module, __: Any, out: Any) -> None:
        out = out[0] if isinstance(out, tuple) else out
        out.retain_grad()
        saved["act"] = out

    hook = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(batch).float()
            classes = logits.argmax(1) if target is None else torch.as_tensor(target).expand(len(batch))
            model.zero_grad(set_to_none=True)
            logits.gather(1, classes.view(-1, 1)).sum().backward()
    finally:
        hook.remove()
    act = _as_map(saved["act"], prefix)
    if saved["act"].grad is None:
        raise RuntimeError("Grad-CAM: the target layer got no gradient (is it used by the logits?)")
    grad = _as_map(saved["act"].grad, prefix)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True))
    cam = nn.functional.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    cam = cam / cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return cam.detach().numpy(), (logits / temperature).softmax(1).detach().numpy()


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The heatmap (jet colours) blended over the image."""
    from matplotlib import colormaps

    colours = (colormaps["jet"](heatmap)[..., :3] * 255).astype(np.uint8)
    return Image.blend(image.convert("RGB"), Image.fromarray(colours).resize(image.size), alpha)


def explain_run(
    run: str | Path,
    images: Sequence[Any],  # files or in-memory images (PIL, arrays)
    *,
    target: str | None = None,
    output: str | Path | None = None,
) -> list[Explanation]:
    """Grad-CAM for each image (`deepcat.explain`): of `target` (a class name) or of the predicted class.
    With `output`, writes one PNG per image there (image, heatmap overlay, label)."""
    from deepcat.inference.answers import decoded
    from deepcat.run_folder import load_model

    model, meta = load_model(run)
    model = model.float()
    classes, pre = list(meta.classes), meta.preprocess
    if target is not None and target not in classes:
        from deepcat.errors import did_you_mean

        raise DeepcatError(
            f"class {target!r} is not one of the run's classes{did_you_mean(target, classes)}: {', '.join(classes)}"
        )
    temperature = meta.calibration_or_default.temperature
    kind = meta.kind
    transform = kind.eval_transform(pre)
    results = []
    for item in images:
        picture = decoded(item, kind)
        x = transform(picture)[None]
        heat, probs = grad_cam(model, x, None if target is None else classes.index(target), temperature)
        crop = Image.fromarray(kind.picture(x[0], pre))
        index = classes.index(target) if target is not None else int(probs[0].argmax())
        results.append(
            Explanation(
                str(item) if isinstance(item, (str, Path)) else type(item).__name__,
                classes[index],
                float(probs[0, index]),
                classes[int(probs[0].argmax())],
                heat[0],
                crop,
            )
        )
    if output is not None:
        save_explanations(results, Path(output))
    return results


def _panel(crop: Image.Image, heatmap: np.ndarray, side: int) -> tuple[Image.Image, Image.Image]:
    """The crop and its Grad-CAM overlay, enlarged to `side` pixels for display."""
    big = max(side, crop.size[0])
    crop = crop.resize((big, big), Image.Resampling.NEAREST)
    heat = (
        np.asarray(Image.fromarray((heatmap * 255).astype(np.uint8)).resize((big, big), Image.Resampling.BILINEAR))
        / 255.0
    )
    return crop, overlay(crop, heat)


def save_explanations(results: list[Explanation], out: Path) -> list[Path]:
    """One PNG per explanation: the crop and the overlay side by side, titled with the class."""
    from deepcat.evaluation.plots import plot_image_grid

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, r in enumerate(results):
        path = out / f"{Path(r.source).stem if r.source else i}-gradcam.png"
        plot_image_grid(
            list(_panel(r.image, r.heatmap, 224)),
            ["input", f"Grad-CAM: {r.label} {r.probability:.2f}"],
            path,
            columns=2,
            title=f"{Path(r.source).name}: predicted {r.predicted}",
        )
        paths.append(path)
    return paths


def worst_mistakes(
    model: nn.Module,
    samples: Samples,
    probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    pre: Preprocessing,
    path: Path,
    *,
    count: int = 8,
) -> list[dict[str, Any]]:
    """The `count` most confident wrong answers, each shown next to its Grad-CAM, as one PNG."""
    from deepcat.evaluation.plots import plot_image_grid
    from deepcat.inputs import input_kind

    wrong = np.flatnonzero(probs.argmax(1) != labels)
    wrong = wrong[np.argsort(-probs[wrong].max(1))][:count]
    if len(wrong) == 0:
        return []
    kind = input_kind(pre.kind)
    transform = kind.eval_transform(pre)
    x = torch.stack([transform(samples.decode(int(i), kind)) for i in wrong])
    heat, _ = grad_cam(model.float(), x)  # one pass for all of them
    pictures, titles, listed = [], [], []
    for k, i in enumerate(wrong):
        item = samples.items[i]
        crop, cam = _panel(Image.fromarray(kind.picture(x[k], pre)), heat[k], 96)
        name = f"[{samples.ids[i]}]" if samples.in_memory else Path(item).name
        pred = classes[int(probs[i].argmax())]
        pictures += [crop, cam]
        titles += [f"{name}\ntrue {classes[labels[i]]}", f"said {pred} {probs[i].max():.2f}"]
        listed.append(
            {"item": name, "true": classes[labels[i]], "predicted": pred, "probability": float(probs[i].max())}
        )
    title = f"Most confident mistakes ({kind.words.picture}, Grad-CAM)"
    plot_image_grid(pictures, titles, path, columns=8, title=title)
    return listed
