"""What quantisation-aware fine-tuning wins over post-training int8, and what it costs, per format, as
`deepcat export` chooses (every layer post-training; where it misses on the search's inputs, the fine-tune; float
segments last).

The model: EfficientNet-Lite0 fine-tuned by `deepcat.train` (defaults, 3 epochs) on `--per-class` Fashion-MNIST
images of each class, its validation split (20%) shared by the export's search and its check. For each int8 format:
the every-layer post-training file's agreement with fp32 on the search's inputs, the tuned file's, the fine-tune's
seconds, which file was written and how the check judged it.

    python benchmarks/qat.py                                   # onnx-int8 and openvino-int8, about 20 minutes
    python benchmarks/qat.py --formats onnx-int8 --per-class 20   # the script works
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", nargs="+", default=["onnx-int8", "openvino-int8"])
    parser.add_argument("--per-class", type=int, default=100, help="training images per class (20% validation)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "qat.json"))
    args = parser.parse_args()

    from finetune_vs_scratch import write_subset

    import deepcat
    from deepcat.errors import DeepcatError

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "fashion"
        write_subset(data, args.per_class, 1, args.seed)
        run = deepcat.train(
            data=str(data / "train"),
            model="tf_efficientnet_lite0",
            epochs=3,
            audit=False,
            seed=args.seed,
            output=tmp,
            name="lite0-fashion",
            progress=False,
        )
        for fmt in args.formats:
            started = time.perf_counter()
            try:
                result = deepcat.export(run, format=fmt, qat="auto", progress=True)
                check, precision = result.check, result.precision or {}
            except DeepcatError as failed:  # a file that misses its check: say so, measure the rest
                rows.append({"format": fmt, "check": f"failed: {str(failed)[:300]}"})
                continue
            tried = precision.get("tried", {})
            every = tried.get("post-training every layer", precision if "tried" not in precision else {})
            tuned = tried.get("quantisation-aware every layer", {})
            if precision.get("weights") == "quantisation-aware":
                tuned = {**tuned, **{k: precision[k] for k in ("search_agreement", "search_kept") if k in precision}}
            rows.append(
                {
                    "format": fmt,
                    "search inputs": precision.get("search_images"),
                    "post-training every layer: agreement": every.get("search_agreement"),
                    "post-training missed": "; ".join(every.get("missed", [])) or None,
                    "tuned every layer: agreement": tuned.get("search_agreement"),
                    "tuned missed": "; ".join(tuned.get("missed", [])) or None,
                    "fine-tune s": tuned.get("seconds"),
                    "written": precision.get("weights"),
                    "float segments": precision.get("float_segments"),
                    "check inputs": check.images,
                    "check agreement": check.top1_agreement,
                    "accuracy fp32": check.accuracy_pytorch,
                    "accuracy int8": check.accuracy_exported,
                    "check passed": check.passed,
                    "ms per image": result.ms_batch1,
                    "export s": time.perf_counter() - started,
                }
            )
    report("qat", rows, args.out, hide=("post-training missed", "tuned missed"), per_class=args.per_class)


if __name__ == "__main__":
    main()
