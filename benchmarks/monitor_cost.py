"""What the server's monitor costs an answer (issue 52: at most 3% of the server's CPU per answer).

The served model is what `deepcat serve` runs with no run folder (the zero-shot ImageNet EfficientNet-Lite0, fp32,
ONNX Runtime, one thread). Per answer, the server runs the model and then, for the monitor, writes the answer
into the ring buffer (`Monitor.observe`) and gives it an id (`Answers.remember`); a scrape or `/v1/monitor`
computes the report (`Monitor.report`: the tests over the window). Measured interleaved in rounds, so both sides
see the same machine: the median of each over rounds, and the ratio of the monitor's work to the model's.

    python benchmarks/monitor_cost.py        # ~1 min
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def per_call(fn, repeat: int) -> float:
    """Seconds per call of `fn`, over `repeat` calls."""
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "monitor_cost.json"))
    args = parser.parse_args()

    from deepcat.exporting.export import export_pretrained_cat_dog
    from deepcat.inference.answers import as_json
    from deepcat.inference.exported import load_exported
    from deepcat.inference.monitor import Monitor
    from deepcat.serving.feedback import Answers

    with tempfile.TemporaryDirectory() as tmp:
        clf = load_exported(export_pretrained_cat_dog(Path(tmp) / "cat-dog.onnx"), threads=1)
    image = clf.meta.kind.example(clf.meta.preprocess, 1).numpy()
    rows, scores = clf.infer(image)
    classes = list(clf.classes)
    rng = np.random.default_rng(0)
    reference = {
        "answers": 500,
        "confidence": sorted(rng.uniform(0.5, 1, 500).tolist()),
        "score": sorted(rng.normal(0, 1, 500).tolist()),
        "predicted": [170, 170, 160],
        "unknown_share": 0.05,
        "accuracy": 0.9,
    }
    monitor, answers = Monitor(classes, reference, threshold=-1.6), Answers(classes)
    answer = as_json("x", rows[0], None if scores is None else scores[0], classes=classes, top_k=3, threshold=None)
    for _ in range(600):  # a full window: the report runs its tests
        monitor.observe(rows, scores)

    def observe_one() -> None:
        monitor.observe(rows, scores)
        answers.remember(dict(answer))

    model_s, monitor_s, report_s = [], [], []
    for _ in range(args.rounds):
        model_s.append(per_call(lambda: clf.infer(image), 20))
        monitor_s.append(per_call(observe_one, 2000))
        report_s.append(per_call(monitor.report, 20))
    model, each, whole = statistics.median(model_s), statistics.median(monitor_s), statistics.median(report_s)
    row = {
        "model ms per answer": 1000 * model,
        "monitor us per answer": 1e6 * each,
        "monitor share of an answer": each / (model + each),
        "report ms (each scrape)": 1000 * whole,
        "report share at one scrape a second, 10 answers a second": whole / (whole + 10 * (model + each)),
    }
    report("monitor_cost", [row], args.out, rounds=args.rounds, model="zero-shot ImageNet EfficientNet-Lite0, fp32")


if __name__ == "__main__":
    main()
