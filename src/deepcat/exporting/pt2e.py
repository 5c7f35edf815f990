"""What the PyTorch 2 export paths (ExecuTorch, LiteRT) share: the graph in core ATen, captured for one input at a
time (as an app runs it), and static int8 of the network body by a PT2E quantizer.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

__all__ = ["BATCH", "FLOAT_MODULES", "GlobalMaxPool", "in_core_aten", "in_the_body", "program", "quantized"]

# Programs take one input at a time, as an app runs them (the runtimes split a batch). With a dynamic batch axis,
# ExecuTorch 1.5.1 (torch 2.14) planned memory for 15 inputs when asked for up to 64 and refused the 16th, and the
# log-mel front end came out with a static batch of 2; LiteRT converts one static shape.
BATCH = 1
FLOAT_MODULES = ("front_end", "unknown")  # `Deployable`'s parts that stay float: the input normalisation and the score


class GlobalMaxPool(torch.nn.Module):
    """`AdaptiveMaxPool2d(1)` as a max over the spatial axes: the same numbers, in core ATen (adaptive max pooling
    is not, and neither ExecuTorch nor LiteRT lowers it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1), keepdim=True)


def in_core_aten(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of `net` with global adaptive max pooling (deepcat's small CNN, `pool: max` stacks) rewritten."""
    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.AdaptiveMaxPool2d) and child.output_size in (1, (1, 1)):
                setattr(module, name, GlobalMaxPool())
    return net


def program(net: torch.nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(net, (example[:BATCH],))


def in_the_body(node: torch.fx.Node) -> bool:
    """Whether an operation is the network's, not one of the parts that stay float (by the modules that called it;
    a weight has none)."""
    called = {path for path, _ in node.meta.get("nn_module_stack", {}).values()}
    return not called & set(FLOAT_MODULES)


def quantized(
    net: torch.nn.Module, example: torch.Tensor, images: np.ndarray, quantizer: Any, *, fold: bool = True
) -> torch.nn.Module:
    """Static int8 of the network body by `quantizer` (its operators outside the body left float), calibrated on
    `images` one at a time; `fold`: int8 weights as constants (ExecuTorch), or float weights behind a quantize
    operator (what LiteRT's converter reads). The front end, softmax and `unknown` score stay float, as in the ONNX
    int8 file."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(program(net, example).module(), quantizer)
    with torch.no_grad():
        for chunk in np.array_split(images, -(-len(images) // BATCH)):
            prepared(torch.from_numpy(chunk))
    return convert_pt2e(prepared, fold_quantize=fold)  # type: ignore[no-any-return]
