"""OpenVINO IR (fp32, and int8 by NNCF's post-training quantisation), converted from the checked ONNX file.

OpenVINO runs on Intel CPUs, GPUs and NPUs and uses VNNI and AMX for int8; the IR is an .xml graph beside a
.bin of weights, with deepcat's metadata in the graph's rt_info (key `deepcat`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from deepcat.inference.runtimes import need

__all__ = ["quantize_openvino", "write_openvino"]


def write_openvino(onnx_file: Path, out: Path, meta: dict[str, Any]) -> Path:
    """The fp32 IR of an exported ONNX file. Weights stay fp32 (OpenVINO's default halves them to fp16)."""
    ov = need("openvino", "openvino", "--format openvino")
    model = ov.convert_model(str(onnx_file))
    model.set_rt_info(json.dumps(meta), ["deepcat"])
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def quantize_openvino(fp32_file: Path, out: Path, images: np.ndarray, held_out: np.ndarray) -> dict[str, Any]:
    """Static int8 by NNCF, calibrated on `images`; returns what was done and the top-1 agreement with the fp32
    IR on `held_out` images (the export check then compares with PyTorch on the run's validation images)."""
    ov = need("openvino", "openvino", "--format openvino-int8")
    nncf = need("nncf", "openvino", "--format openvino-int8")
    from deepcat.inference.exported import load_exported

    model = ov.Core().read_model(str(fp32_file))
    calibration = nncf.Dataset([image[None] for image in images])
    quantized = nncf.quantize(model, calibration, subset_size=len(images))
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    precision: dict[str, Any] = {"quantizer": f"nncf {nncf.__version__}", "calibration_images": len(images)}
    if len(held_out):
        fp32, int8 = (load_exported(f).probabilities(held_out).argmax(1) for f in (fp32_file, out))
        precision["held_out_agreement"] = float((fp32 == int8).mean())
    return precision
