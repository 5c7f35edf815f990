"""How well "unknown" works, measured honestly: train on some classes, hold two out, and score the held-out
classes' test images as the unknowns. Compares the two rejection scores deepcat could use (calibrated
maximum softmax probability, energy) by AUROC, and reports the share of unknowns the saved threshold rejects.

    python benchmarks/open_set.py --data digits                       # ~30 s on 2 cores
    python benchmarks/open_set.py --data fashion-mnist --epochs 5     # ~5 min
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

HELD_OUT = {"digits": ("8", "9"), "fashion-mnist": ("bag", "ankle-boot")}


def log_msp(logits: np.ndarray, t: float) -> np.ndarray:
    """log of the calibrated top probability, in float64 and log space: no ties at probability 1.0."""
    z = logits.astype(np.float64) / t
    m = z.max(1)
    return -np.log(np.exp(z - m[:, None]).sum(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", choices=tuple(HELD_OUT))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    import deepcat
    from deepcat.evaluation import calibration
    from deepcat.data.sources import resolve_data
    from deepcat.inputs.image import Preprocess
    from deepcat.evaluation.scores import logits_of
    from deepcat.run_folder import load_model

    full = resolve_data(args.data)
    held_out = HELD_OUT[args.data]
    known = [c for c in full.classes if c not in held_out]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = deepcat.train(data=args.data, classes=",".join(known), epochs=args.epochs, output=tmp, name="open",
                            progress=False)
        seconds = time.perf_counter() - started
        model, meta = load_model(run)
        cal = calibration.Calibration.from_dict(meta["calibration"])
        pre = Preprocess.from_dict(meta["preprocess"])
        held = np.isin(np.array(full.classes)[full.test.labels], held_out)
        known_test = resolve_data(args.data, classes=",".join(known)).test
        kw = dict(pre=pre, device=torch.device("cpu"), dtype=None, progress=False)
        known_logits, known_labels = logits_of(model, known_test, **kw)
        unknown_logits, _ = logits_of(model, full.test.subset(np.flatnonzero(held)), **kw)
        cal_report = json.loads((run / "calibration.json").read_text())
    t = cal.temperature
    known_probs, unknown_probs = calibration.softmax(known_logits, t), calibration.softmax(unknown_logits, t)
    row = {
        "data": args.data, "held_out": "+".join(held_out), "known_test": len(known_labels),
        "unknown_test": len(unknown_logits), "epochs": args.epochs, "train_seconds": seconds,
        "known_accuracy": float((known_probs.argmax(1) == known_labels).mean()),
        "auroc_msp": calibration.auroc(calibration.max_probability(known_probs),
                                       calibration.max_probability(unknown_probs)),
        "auroc_log_msp": calibration.auroc(log_msp(known_logits, t), log_msp(unknown_logits, t)),
        "auroc_energy": calibration.auroc(calibration.energy_score(known_logits, t),
                                          calibration.energy_score(unknown_logits, t)),
        "threshold": cal.threshold,
        "auroc_energy_t1": calibration.auroc(calibration.energy_score(known_logits),
                                             calibration.energy_score(unknown_logits)),
        "known_accepted": float(1 - cal.rejects(calibration.energy_score(known_logits)).mean()),
        "unknown_rejected": float(cal.rejects(calibration.energy_score(unknown_logits)).mean()),
        "ece_before": cal_report["ece_before"], "ece_after": cal_report["ece_after"], "temperature": t,
    }
    out = args.out or Path(__file__).parent / "results" / f"open_set_{args.data}.json"
    report("open_set", [row], out)


if __name__ == "__main__":
    main()
