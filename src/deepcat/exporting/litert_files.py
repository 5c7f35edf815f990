"""LiteRT files (.tflite, formerly TensorFlow Lite), fp32 or int8 (PyTorch 2 export quantisation with LiteRT's
quantizer), converted by `litert-torch`, for LiteRT on Android, iOS and microcontrollers.

The file takes the same input as the ONNX file, one image at a time, and has the same three outputs; deepcat's
metadata is a named metadata entry, `deepcat`, of the flatbuffer (JSON), which `ai_edge_litert`'s schema reads.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepcat.exporting.pt2e import BATCH, fuse_clamps, in_core_aten, quantized
from deepcat.inference.runtimes import need
from deepcat.run_meta import ExportMeta

__all__ = ["write_litert"]


def _litert_int8(
    net: torch.nn.Module, example: torch.Tensor, images: np.ndarray, float_segments: int = 0
) -> tuple[torch.nn.Module, Any]:
    """Static int8 (per-channel weights, per-tensor activations) by litert-torch's PT2E quantizer, on the network
    body only (the first `float_segments` float too): its own way to leave modules float (`set_module_name(name,
    None)`) is not implemented in 0.10, so its annotation runs with deepcat's filter (the private step its
    `annotate` runs per module name), after each clamp is joined to the convolution before it (`fuse_clamps`)."""
    quantizer_module = need("litert_torch.quantize.pt2e_quantizer", "litert", "--format litert-int8")
    utils = need("litert_torch.quantize.pt2e_quantizer_utils", "litert", "--format litert-int8")

    def quantizer_for(keep: Callable[[torch.fx.Node], bool]) -> Any:
        class Kept(quantizer_module.PT2EQuantizer):  # type: ignore[misc,name-defined]
            def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
                fuse_clamps(model, self.global_config, utils, keep)
                self._annotate_all_static_patterns(model, self.global_config, keep)
                quantizer_module.propagate_annotation(model)
                return model

        return Kept().set_global(quantizer_module.get_symmetric_quantization_config(is_per_channel=True))

    return quantized(net, example, images, quantizer_for, fold=False, float_segments=float_segments)


def write_litert(
    net: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    meta: ExportMeta,
    images: np.ndarray | None = None,
    float_segments: int = 0,
) -> Path:
    """Convert `net` (int8 when calibration `images` are given, its first `float_segments` float) to a LiteRT
    flatbuffer at `out`, with deepcat's metadata inside."""
    litert_torch = need("litert_torch", "litert", "--format litert")
    net = in_core_aten(net)
    model, config = net, None
    if images is not None:  # the converter turns quantize / dequantize pairs into int8 tensors in STATIC mode
        model, quantizer = _litert_int8(net, example, images, float_segments)
        config = need("litert_torch.quantize.quant_config", "litert", "--format litert-int8").QuantConfig(
            pt2e_quantizer=quantizer
        )
    with _constants_kept_alive():
        litert_torch.convert(model, (example[:BATCH],), quant_config=config).export(str(out))
    _add_metadata(out, meta)
    _runs(out)
    return out


@contextlib.contextmanager
def _constants_kept_alive() -> Iterator[None]:
    """litert-torch 0.10 caches the constants it writes by memory address, and some are temporary copies freed
    while it converts: a later constant of the same shape at a reused address took an earlier one's values (the
    `layers` score's two whitening matrices of a stage, so its score came out 466 for -70, on some runs and not
    others). Keeping every constant alive until the conversion ends makes each address one constant's."""
    inline_consts = need("litert_torch.backend.inline_consts", "litert", "--format litert")
    fingerprint = inline_consts._ConstantFingerprint
    original = fingerprint.__dict__["from_tensor"]
    kept: list[torch.Tensor] = []

    def from_tensor(cls: type, tensor: torch.Tensor) -> Any:
        kept.append(tensor)
        return original.__func__(cls, tensor)

    fingerprint.from_tensor = classmethod(from_tensor)
    try:
        yield
    finally:
        fingerprint.from_tensor = original


def _runs(path: Path) -> None:
    """LiteRT's interpreter can run every operation of the file, or the export says in one line which it lacks
    (the `knn` score's top-k converts to STABLEHLO_SORT, which the interpreter does not have)."""
    from deepcat.errors import DeepcatError

    interpreter = need("ai_edge_litert.interpreter", "litert", "--format litert")
    try:
        interpreter.Interpreter(model_path=str(path)).allocate_tensors()
    except (RuntimeError, ValueError) as error:
        op = re.search(r"opcode '(\w+)'", str(error))
        raise DeepcatError(
            f"LiteRT's interpreter cannot run {op.group(1) if op else 'an operation'} of {path.name} "
            "(the knn unknown score's top-k is one): export another format for this model"
        ) from error


def _add_metadata(path: Path, meta: ExportMeta) -> None:
    """Append `meta` as the flatbuffer's metadata entry `deepcat` (a buffer of JSON bytes)."""
    import flatbuffers

    schema = need("ai_edge_litert.schema_py_generated", "litert", "--format litert")
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(meta.to_json().encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "deepcat", len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(builder.Output())
