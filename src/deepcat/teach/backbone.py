"""The frozen backbone teach embeds with: a pretrained ImageNet network (EfficientNet-Lite0 by default, whose weights
ship offline), raw pixels in, the classifier's input (its pooled features) out, and its own ImageNet classifier kept
beside it as plain arrays, so ImageNet answers (cats, dogs, neither) come from the stored features without another
pass.

On a CPU it runs in ONNX Runtime, which computes Lite0's graph faster than eager PyTorch; the graph is exported once
per machine (a few seconds) into ~/.cache/deepcat/teach and named by a digest of the weights, so changed weights
export again. With a CUDA GPU, or where the export fails, PyTorch runs it. Either way in fp32, as the deployed
model computes: a head fitted on these features answers the same in the exported model.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
import torch.nn as nn

from deepcat.errors import DeepcatError
from deepcat.inference.unknown_score import WithFeatures
from deepcat.inputs import input_kind
from deepcat.inputs.image import Preprocess
from deepcat.models.create import classifier_of, create_model, default_preprocess

__all__ = ["DEFAULT_BACKBONE", "Backbone", "PooledFeatures", "default_runtime", "load_backbone"]

DEFAULT_BACKBONE = "tf_efficientnet_lite0"
Runtime = Literal["auto", "onnxruntime", "torch"]


@dataclass(frozen=True)
class Backbone:
    """A loaded backbone: `embed` maps (B, 3, H, W) float32 RGB pixels in 0..255 (as `deepcat.inputs.image.pixels`
    gives them) to (B, D) float32 features; `imagenet_weight` (1000, D) and `imagenet_bias` (1000,) are its ImageNet
    classifier."""

    name: str
    pre: Preprocess
    imagenet_weight: np.ndarray
    imagenet_bias: np.ndarray
    embed: Callable[[np.ndarray], np.ndarray]
    runtime: str

    @property
    def width(self) -> int:
        """D, the length of one input's features."""
        return int(self.imagenet_weight.shape[1])


def default_runtime() -> str:
    """ONNX Runtime on a CPU, PyTorch where a CUDA GPU is available."""
    return "torch" if torch.cuda.is_available() else "onnxruntime"


def load_backbone(name: str = DEFAULT_BACKBONE, *, runtime: Runtime = "auto", cache: Path | None = None) -> Backbone:
    """The pretrained `name` with its ImageNet head, ready to embed.

    Args:
        name: a pretrained model with a linear ImageNet classifier (timm's names; `tf_efficientnet_lite0` needs no
            download).
        runtime: onnxruntime, torch, or auto (`default_runtime`).
        cache: where the exported ONNX graph is kept (default ~/.cache/deepcat/teach).

    Returns:
        The backbone; its `runtime` says which runtime embeds.

    >>> backbone = load_backbone()
    >>> backbone.embed(pixels_batch).shape  # (B, 1280)
    """
    model, spec = create_model(name=name, num_classes=1000, image_size=224, pretrained=True)
    head = classifier_of(model)
    if not isinstance(head, nn.Linear) or head.out_features != 1000:
        raise DeepcatError(
            f"backbone {name!r} has no linear ImageNet classifier (found {type(head).__name__}); teach needs one. "
            f"Use {DEFAULT_BACKBONE} (the default) or another pretrained timm model ending in one Linear layer"
        )
    pre = cast(Preprocess, default_preprocess(model, spec, image_size=None, native_size=None))
    net = PooledFeatures(model.eval(), pre)
    chosen = default_runtime() if runtime == "auto" else runtime
    embed = None
    if chosen == "onnxruntime":
        embed = _onnx_embed(net, pre, name, cache or Path.home() / ".cache" / "deepcat" / "teach")
        if embed is None:
            chosen = "torch"
    if embed is None:
        embed = _torch_embed(net)
    return Backbone(
        spec.name,
        pre,
        head.weight.detach().numpy().astype(np.float32),
        head.bias.detach().numpy().astype(np.float32),
        embed,
        chosen,
    )


class PooledFeatures(nn.Module):
    """Raw pixels (B, 3, H, W) in 0..255 -> the kind's front end (normalisation) -> `model`'s pooled features, the
    input of its classifier (`WithFeatures`): what the head sees inside the trained model."""

    def __init__(self, model: nn.Module, pre: Preprocess):
        super().__init__()
        self.front_end = input_kind(pre.kind).front_end(pre)
        self.tapped = WithFeatures(model, cast(nn.Linear, classifier_of(model)))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        features, _ = self.tapped(self.front_end(raw))  # (B, D)
        return cast(torch.Tensor, features)


def _torch_embed(net: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net.to(device)

    def embed(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return cast(np.ndarray, net(torch.from_numpy(pixels).to(device)).float().cpu().numpy())

    return embed


def _onnx_embed(net: nn.Module, pre: Preprocess, name: str, cache: Path) -> Callable[[np.ndarray], np.ndarray] | None:
    """ONNX Runtime on the exported graph (exported first if this machine has not yet); None where the export
    fails (the caller runs PyTorch)."""
    import onnxruntime as ort

    path = cache / f"{name}-{pre.input_size}-{_digest(net)}.onnx"
    if not path.is_file():
        try:
            _export(net, pre, path)
        except Exception as e:  # noqa: BLE001 - any exporter failure: PyTorch embeds instead
            print(f"teach: ONNX export of {name} failed ({type(e).__name__}: {e}); PyTorch embeds", file=sys.stderr)
            return None
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # decoding threads need the cores
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def embed(pixels: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, session.run(None, {input_name: np.ascontiguousarray(pixels, np.float32)})[0])

    return embed


def _digest(net: nn.Module) -> str:
    """Names the weights: a changed state dict exports a new graph."""
    digest = hashlib.blake2b(digest_size=8)
    for key, tensor in net.state_dict().items():
        digest.update(key.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _export(net: nn.Module, pre: Preprocess, path: Path) -> None:
    """fp32 ONNX with a dynamic batch axis (torch.export, as `deepcat export` does), written to a temporary name in
    the same folder and renamed, so a process killed while exporting leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, pre.input_size, pre.input_size) * 255
    with torch.no_grad():
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            input_names=["pixels"],
            output_names=["features"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".onnx.tmp", delete=False) as tmp:
        pass
    try:
        program.save(tmp.name, external_data=False)
        Path(tmp.name).replace(path)
    finally:
        Path(tmp.name).unlink(missing_ok=True)
