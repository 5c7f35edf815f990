"""ExecuTorch programs (.pte) lowered to XNNPACK, fp32 or int8 (PyTorch 2 export quantisation with ExecuTorch's
XNNPACK quantizer), for ExecuTorch on Android and iOS.

The program takes the same input as the ONNX file and has the same three outputs; deepcat's metadata is a
constant method, `deepcat`, that returns it as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepcat.inference.runtimes import EXECUTORCH_BATCH, need

__all__ = ["GlobalMaxPool", "write_executorch"]


class GlobalMaxPool(torch.nn.Module):
    """`AdaptiveMaxPool2d(1)` as a max over the spatial axes: the same numbers, in ExecuTorch's core ATen opset
    (adaptive max pooling is not)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(-2, -1), keepdim=True)


def _in_core_aten(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of `net` with global adaptive max pooling (deepcat's small CNN, `pool: max` stacks) rewritten."""
    import copy

    net = copy.deepcopy(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.AdaptiveMaxPool2d) and child.output_size in (1, (1, 1)):
                setattr(module, name, GlobalMaxPool())
    return net


FLOAT_MODULES = ("front_end", "unknown")  # `Deployable`'s parts that stay float: the input normalisation and the score


def _program(net: torch.nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(net, (example[:EXECUTORCH_BATCH],))


def _in_the_body(node: torch.fx.Node) -> bool:
    """Whether an operation is the network's, not one of the parts that stay float (by the modules that called it;
    a weight has none)."""
    called = {path for path, _ in node.meta.get("nn_module_stack", {}).values()}
    return not called & set(FLOAT_MODULES)


def _quantized(net: torch.nn.Module, example: torch.Tensor, images: np.ndarray) -> torch.nn.Module:
    """Static int8 (per-channel weights, per-tensor activations) of the network body, calibrated on `images`. The
    front end, softmax and `unknown` score stay float, as in the ONNX int8 file."""
    quantizer_module = need(
        "executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch", "--format executorch-int8"
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = quantizer_module.XNNPACKQuantizer().set_global(
        quantizer_module.get_symmetric_quantization_config(is_per_channel=True)
    )
    quantizer.set_filter_function(_in_the_body)
    prepared = prepare_pt2e(_program(net, example).module(), quantizer)
    with torch.no_grad():
        for chunk in np.array_split(images, -(-len(images) // EXECUTORCH_BATCH)):
            prepared(torch.from_numpy(chunk))
    return convert_pt2e(prepared)  # type: ignore[no-any-return]


def write_executorch(
    net: torch.nn.Module, example: torch.Tensor, out: Path, meta: dict[str, Any], images: np.ndarray | None = None
) -> Path:
    """Lower `net` (int8 when calibration `images` are given) to XNNPACK and write the program to `out`."""
    need("executorch", "executorch", "--format executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    net = _in_core_aten(net)
    model = net if images is None else _quantized(net, example, images)
    lowered = to_edge_transform_and_lower(
        _program(model, example), partitioner=[XnnpackPartitioner()], constant_methods={"deepcat": json.dumps(meta)}
    )
    out.write_bytes(lowered.to_executorch().buffer)
    return out
