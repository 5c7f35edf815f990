"""ExecuTorch programs (.pte) lowered to XNNPACK, fp32 or int8 (PyTorch 2 export quantisation with ExecuTorch's
XNNPACK quantizer), for ExecuTorch on Android and iOS.

The program takes the same input as the ONNX file and has the same three outputs; deepcat's metadata is a
constant method, `deepcat`, that returns it as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepcat.exporting.pt2e import fuse_clamps, in_core_aten, program, quantized
from deepcat.inference.runtimes import need
from deepcat.run_meta import ExportMeta

__all__ = ["write_executorch"]


def _xnnpack_int8(
    net: torch.nn.Module, example: torch.Tensor, images: np.ndarray, float_segments: int = 0
) -> torch.nn.Module:
    """Static int8 (per-channel weights, per-tensor activations) by ExecuTorch's XNNPACK quantizer, each clamp
    quantised with the convolution before it (`fuse_clamps`); the first `float_segments` stay float."""
    quantizer_module = need(
        "executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "executorch", "--format executorch-int8"
    )
    utils = need(
        "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils", "executorch", "--format executorch-int8"
    )

    class ClampsFused(quantizer_module.XNNPACKQuantizer):  # type: ignore[misc,name-defined]
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            fuse_clamps(model, self.global_config, utils, self.filter_fn)
            return super().annotate(model)  # type: ignore[no-any-return]

    def quantizer_for(keep: Callable[[torch.fx.Node], bool]) -> Any:
        quantizer = ClampsFused().set_global(quantizer_module.get_symmetric_quantization_config(is_per_channel=True))
        quantizer.set_filter_function(keep)
        return quantizer

    return quantized(net, example, images, quantizer_for, float_segments=float_segments)[0]


def write_executorch(
    net: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    meta: ExportMeta,
    images: np.ndarray | None = None,
    float_segments: int = 0,
) -> Path:
    """Lower `net` (int8 when calibration `images` are given, its first `float_segments` float) to XNNPACK and write
    the program to `out`."""
    need("executorch", "executorch", "--format executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    net = in_core_aten(net)
    model = net if images is None else _xnnpack_int8(net, example, images, float_segments)
    lowered = to_edge_transform_and_lower(
        program(model, example), partitioner=[XnnpackPartitioner()], constant_methods={"deepcat": meta.to_json()}
    )
    out.write_bytes(lowered.to_executorch().buffer)
    return out
