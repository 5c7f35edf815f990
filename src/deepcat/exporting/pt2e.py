"""What the PyTorch 2 export paths (ExecuTorch, LiteRT) share: the graph in core ATen, captured for one input at a
time (as an app runs it), and static int8 of the network body by a PT2E quantizer, with each convolution and the
clamp after it (ReLU6) quantised as one operation (`fuse_clamps`) and, as in the ONNX int8 file, the leading
segments of the network left float when asked (`segments_of`: the writers choose how many on held-out images).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "BATCH",
    "FLOAT_MODULES",
    "GlobalMaxPool",
    "fuse_clamps",
    "in_core_aten",
    "in_the_body",
    "program",
    "quantized",
    "segments_of",
    "WEIGHTED_OPS",
]

# Programs take one input at a time, as an app runs them (the runtimes split a batch). With a dynamic batch axis,
# ExecuTorch 1.5.1 (torch 2.14) planned memory for 15 inputs when asked for up to 64 and refused the 16th, and the
# log-mel front end came out with a static batch of 2; LiteRT converts one static shape.
BATCH = 1
FLOAT_MODULES = ("front_end", "unknown")  # `Deployable`'s parts that stay float: the input normalisation and the score
WEIGHTED_OPS = ("conv1d", "conv2d", "linear")  # the layers a segment counts, and a clamp after them joins


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


def fuse_clamps(model: torch.fx.GraphModule, config: Any, qspecs: Any, keep: Callable[[torch.fx.Node], bool]) -> None:
    """Annotate each convolution (or linear layer) whose only user is a clamp (`hardtanh`: ReLU6) as one operation,
    quantised after the clamp, as ExecuTorch's and LiteRT's quantizers already do for one followed by ReLU. They
    give a clamp its input's quantisation instead, so the int8 scale after ReLU6 spans the convolution's raw range,
    and where that is wider than the 0..6 ReLU6 keeps, the values that pass get fewer of the 256 levels
    (`benchmarks/infer.py`, every-layer int8 of the fine-tuned Lite0 on 1,000 test images: ExecuTorch 74.7% top-1
    agreement with fp32 and LiteRT 74.3% before, 93.1% both with the clamps fused).
    Run before the quantizer's own annotation, which skips what is annotated. `qspecs`: the quantizer's module of
    `get_*_qspec` functions; `keep`: whether a node is quantised."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    key = "quantization_annotation"
    clamps = (torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default)
    joined = _weighted_ops()
    for clamp in model.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in clamps:
            continue
        op = clamp.args[0]
        if not isinstance(op, torch.fx.Node) or op.target not in joined or len(op.users) > 1:
            continue
        source, *params = [arg for arg in op.args[:3] if isinstance(arg, torch.fx.Node)]  # input, weight, bias
        inputs = {source: qspecs.get_input_act_qspec(config), params[0]: qspecs.get_weight_qspec(config)}
        if len(params) > 1:
            inputs[params[1]] = qspecs.get_bias_qspec(config)
        pattern = [clamp, op, *params]  # the weight and bias are annotated with the pair, as the quantizers do
        if any(key in node.meta for node in pattern) or not all(keep(node) for node in pattern):
            continue
        op.meta[key] = QuantizationAnnotation(input_qspec_map=inputs, _annotated=True)
        clamp.meta[key] = QuantizationAnnotation(output_qspec=qspecs.get_output_act_qspec(config), _annotated=True)
        for param in params:
            param.meta[key] = QuantizationAnnotation(_annotated=True)


def _weighted_ops() -> set[Any]:
    return {getattr(torch.ops.aten, op).default for op in WEIGHTED_OPS}


def segments_of(graph: torch.fx.Graph, count: int) -> dict[str, int]:
    """Each operation's segment: the graph, in its order, cut into `count` runs holding equal numbers of weighted
    layers, as `onnx_formats.segments` cuts the ONNX graph (fewer runs when it has fewer weighted layers)."""
    weighted = _weighted_ops()
    nodes = [node for node in graph.nodes if node.op == "call_function"]
    per_segment = max(1, -(-sum(node.target in weighted for node in nodes) // count))
    segment, seen, runs = {}, 0, 0
    for node in nodes:
        if node.target in weighted:
            runs = seen // per_segment
            seen += 1
        segment[node.name] = runs
    return segment


def quantized(
    net: torch.nn.Module,
    example: torch.Tensor,
    images: np.ndarray,
    quantizer_for: Callable[[Callable[[torch.fx.Node], bool]], Any],
    *,
    fold: bool = True,
    float_segments: int = 0,
) -> tuple[torch.nn.Module, Any]:
    """Static int8 of the network body by the quantizer `quantizer_for(keep)` makes (`keep`: whether an operation is
    quantised), calibrated on `images` one at a time, and that quantizer; the first `float_segments` of the graph's
    SEGMENTS (`segments_of`) stay float. `fold`: int8 weights as constants (ExecuTorch), or float weights behind a
    quantize operator (what LiteRT's converter reads). The front end, softmax and `unknown` score stay float, as in
    the ONNX int8 file."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from deepcat.exporting.mixed_precision import SEGMENTS

    captured = program(net, example).module()
    segment = segments_of(captured.graph, SEGMENTS)

    def keep(node: torch.fx.Node) -> bool:  # a weight is not an operation: its layer decides
        return in_the_body(node) and (node.op != "call_function" or segment.get(node.name, SEGMENTS) >= float_segments)

    quantizer = quantizer_for(keep)
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for chunk in np.array_split(images, -(-len(images) // BATCH)):
            prepared(torch.from_numpy(chunk))
    return convert_pt2e(prepared, fold_quantize=fold), quantizer
