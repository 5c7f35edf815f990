"""OpenVINO IR (fp32, and int8 by NNCF's post-training quantisation), converted from the checked ONNX file.

OpenVINO runs on Intel CPUs, GPUs and NPUs and uses VNNI and AMX for int8; the IR is an .xml graph beside a
.bin of weights, with deepcat's metadata in the graph's rt_info (key `deepcat`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepcat.inference.runtimes import need
from deepcat.inference.signal_stack import own_signal_stack
from deepcat.run_meta import ExportMeta

__all__ = ["RESTORE_ITERATIONS", "quantize_openvino", "score_nodes", "write_openvino"]

# Layers NNCF's accuracy control puts back in float, one group a step, at most: each step ranks every group left on
# the search's inputs again (ImageNet Lite0 on 2 cores: about 1.5 min a step); where more would be needed, the
# export check says the file misses its bound.
RESTORE_ITERATIONS = 8


def write_openvino(onnx_file: Path, out: Path, meta: ExportMeta) -> Path:
    """The fp32 IR of an exported ONNX file. Weights stay fp32 (OpenVINO's default halves them to fp16)."""
    ov = need("openvino", "openvino", "--format openvino")
    model = ov.convert_model(str(onnx_file))
    model.set_rt_info(meta.to_json(), ["deepcat"])
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def score_nodes(model: Any) -> list[str]:
    """Nodes that compute the `unknown` score alone (the graph's second output, not the logits of its third): NNCF
    leaves them float, as the ONNX int8 file does. Quantised, a digits model's score collapsed to one value on
    every input, and the file never answered `unknown`."""

    def ancestors(output: Any) -> set[str]:
        seen: set[str] = set()
        stack = [output.get_node()]
        while stack:
            node = stack.pop()
            if node.get_friendly_name() not in seen:
                seen.add(node.get_friendly_name())
                stack.extend(value.get_node() for value in node.input_values())
        return seen

    _, score, logits = model.outputs
    return sorted(ancestors(score) - ancestors(logits))


def quantize_openvino(
    fp32_file: Path,
    out: Path,
    images: np.ndarray,
    held_out: np.ndarray,
    held_out_labels: np.ndarray | None = None,
    *,
    reference: np.ndarray | None = None,
    every_layer: bool = False,
) -> dict[str, Any]:
    """NNCF's quantisation (below), leaving the calling thread's signal stack as it found it: NNCF's own `Core`s load
    OpenVINO's CPU plugin, which replaces it (see `deepcat.inference.signal_stack`)."""
    with own_signal_stack():
        return _quantize(fp32_file, out, images, held_out, held_out_labels, reference, every_layer)


def _quantize(
    fp32_file: Path,
    out: Path,
    images: np.ndarray,
    held_out: np.ndarray,
    labels: np.ndarray | None,
    reference: np.ndarray | None,
    every_layer: bool,
) -> dict[str, Any]:
    """Static int8 by NNCF, calibrated on `images`. With `held_out` images, NNCF's accuracy control keeps in float
    the layers that cost most there, until RESTORE_ITERATIONS steps are spent or int8 keeps, with the search's
    margin to spare, what the export check asks: with `labels`, accuracy within 1% of fp32's (relative, MLPerf's
    rule); without, agreement with fp32 within 1% of all. On a Lite0 fine-tuned on few images, every layer
    in int8 agreed with fp32 on 84% of test images. `reference`: fp32's answers on `held_out` (default: the fp32
    IR's); `every_layer`: no accuracy control, every layer int8, judged on `held_out` by the same rule. Returns what
    was done (the export check then compares with PyTorch on validation inputs the search did not use)."""
    ov = need("openvino", "openvino", "--format openvino-int8")
    nncf = need("nncf", "openvino", "--format openvino-int8")
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from deepcat.exporting.check import INT8_MIN_ACCURACY_RATIO, INT8_MIN_AGREEMENT, INT8_UNLABELLED_MIN_AGREEMENT
    from deepcat.exporting.mixed_precision import SEARCH_MARGIN
    from deepcat.inference.exported import load_exported

    model = ov.Core().read_model(str(fp32_file))
    calibration = nncf.Dataset([image[None] for image in images])
    precision: dict[str, Any] = {"quantizer": f"nncf {nncf.__version__}", "calibration_images": len(images)}
    ignored = nncf.IgnoredScope(names=score_nodes(model), validate=False)
    if every_layer or not len(held_out):
        quantized = nncf.quantize(model, calibration, subset_size=len(images), ignored_scope=ignored)
        ov.save_model(quantized, str(out), compress_to_fp16=False)
        if not len(held_out):
            return precision
    answers = load_exported(fp32_file).probabilities(held_out).argmax(1) if reference is None else reference
    if every_layer:
        return precision | _judged(answers, load_exported(out).probabilities(held_out).argmax(1), labels)
    targets = answers if labels is None else labels  # agreement with fp32, or accuracy

    def hits(compiled: Any, items: Any) -> tuple[float, list[float]]:
        """Accuracy (without labels: agreement), or 0 when the file also misses the check's agreement bound."""
        top1 = [compiled(image)[0].argmax(1)[0] for image, _, _ in items]
        right = [float(answer == target) for answer, (_, target, _) in zip(top1, items)]
        agreement = np.mean([answer == fp32 for answer, (_, _, fp32) in zip(top1, items)])
        kept = labels is None or agreement >= INT8_MIN_AGREEMENT + SEARCH_MARGIN
        return float(np.mean(right)) if kept else 0.0, right

    bound = INT8_UNLABELLED_MIN_AGREEMENT if labels is None else INT8_MIN_ACCURACY_RATIO
    quantized = nncf.quantize_with_accuracy_control(
        model,
        calibration,
        nncf.Dataset(list(zip(held_out[:, None], targets, answers)), lambda item: item[0]),
        hits,
        max_drop=1 - bound - SEARCH_MARGIN,
        ignored_scope=ignored,
        drop_type=nncf.DropType.ABSOLUTE if labels is None else nncf.DropType.RELATIVE,
        subset_size=len(images),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=RESTORE_ITERATIONS, ranking_subset_size=min(len(held_out), 100)
        ),
    )
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return precision | _judged(answers, load_exported(out).probabilities(held_out).argmax(1), labels)


def _judged(reference: np.ndarray, int8: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """How the written file answers the search's inputs, by the check's rule with the search's margin."""
    from deepcat.exporting.check import int8_keeps
    from deepcat.exporting.mixed_precision import SEARCH_MARGIN

    return {
        "search_agreement": float((reference == int8).mean()),
        "search_images": len(int8),
        "search_kept": int8_keeps(reference, int8, labels, margin=SEARCH_MARGIN),
    }
