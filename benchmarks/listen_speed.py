"""How fast `deepcat listen` reads a long recording (issue 51: an hour in at most 30 s on 2 cores), old path and
new in one run, on the same recording and model.

The model is spoken-digits' default network (DS-CNN, 10 classes, 1 s clips, untrained: its weights do not
change the time). The recording is espeak-ng's digits between pauses under noise (`keyword_stream`), repeated to
`--minutes`. Each time is the fastest of `--repeats` (the machine's CPU is shared). Rows:
- old: each window through `predict` (the graph's front end on every window), on the first `--slow-minutes`;
- frames once, PyTorch: the windows' spectrograms sliced from log-mel frames computed once, the network in
  PyTorch (`deepcat listen RUN` on a recording under 2.5 minutes), on the first `--slow-minutes`;
- frames once, the run's network exported in memory (`deepcat listen RUN`), the whole recording, export included;
- frames once, an exported .onnx cut after its front end (`deepcat listen RUN.onnx`), the whole recording;
- the same over a whole hour, once (the issue's target: at most 30 s).
Each row gives seconds per hour of audio and the largest difference of any window's probability from the old
path's on the part both read.

    python benchmarks/listen_speed.py   # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def recording(minutes: float) -> np.ndarray:
    from deepcat.data import spoken_digits
    from deepcat.inputs.audio import SAMPLE_RATE, to_mono_16k

    words = [
        (word, spoken_digits.trimmed(to_mono_16k(*spoken_digits.espeak(voice, word, 160, 50))))
        for voice in ("en-us", "en-gb+f2", "en-us+m3")
        for word in spoken_digits.WORDS
    ]
    piece = spoken_digits.keyword_stream(words, [], seed=0)[0]
    return np.resize(piece, int(minutes * 60 * SAMPLE_RATE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="audio the ONNX Runtime paths read")
    parser.add_argument("--slow-minutes", type=float, default=2.0, help="audio the PyTorch paths read")
    parser.add_argument("--repeats", type=int, default=3, help="each path's time is its fastest of this many")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "listen_speed.json"))
    args = parser.parse_args()

    import torch

    from deepcat.exporting.graph import Deployable, metadata
    from deepcat.exporting.onnx_formats import export_onnx
    from deepcat.inference import listen_windows
    from deepcat.inference.exported import load_exported
    from deepcat.inference.listen import window_probabilities, window_probabilities_one_by_one, window_starts
    from deepcat.inference.torch_model import Classifier
    from deepcat.inputs.audio import SAMPLE_RATE, AudioPreprocess
    from deepcat.models.keyword_cnn import KeywordCNN

    torch.manual_seed(0)
    pre = AudioPreprocess()
    classes = [str(i) for i in range(10)]
    classifier = Classifier(KeywordCNN(len(classes), in_chans=1), classes, pre, "dscnn")
    audio = recording(args.minutes)
    slow = audio[: int(args.slow_minutes * 60 * SAMPLE_RATE)]
    windows = [slow[s : s + pre.samples] for s in window_starts(len(slow), pre.samples, 1_600)]  # 100 ms hops

    def timed(work, repeats=args.repeats):  # the fastest (the CPU is shared: slower runs measure the neighbours)
        best, result = (np.inf, np.inf), None
        for _ in range(repeats):
            started, cpu = time.perf_counter(), time.process_time()
            result = work()
            best = min(best, (time.perf_counter() - started, time.process_time() - cpu))
        return best, result

    seconds, old = timed(lambda: window_probabilities_one_by_one(classifier, windows, reject=True, batch_size=64))
    rows = [row("old: each window through predict", "torch", slow, seconds, None)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dscnn.onnx"
        meta = metadata(name="dscnn", classes=classes, pre=pre, version="bench", source="dscnn")
        export_onnx(Deployable(classifier.model, pre), torch.zeros(2, pre.samples), path, meta)
        exported = load_exported(path, threads=torch.get_num_threads())
        paths = (
            ("frames once", "torch", classifier, 10**12, slow),
            ("frames once, run exported in memory (export included)", "onnxruntime", classifier, 0, audio),
            ("frames once, .onnx cut after its front end", "onnxruntime", exported, 0, audio),
        )
        for name, runtime, model, pays_after, heard in paths:
            listen_windows.EXPORT_PAYS_AFTER = pays_after
            seconds, (_, new) = timed(lambda: window_probabilities(model, heard, hop_ms=100))  # noqa: B023
            rows.append(row(name, runtime, heard, seconds, float(np.abs(new[: len(old)] - old).max())))
        hour = recording(60.0)
        seconds, _ = timed(lambda: window_probabilities(exported, hour, hop_ms=100), repeats=1)
        rows.append(row("an hour: .onnx cut after its front end", "onnxruntime", hour, seconds, None))
    old_per_hour = rows[0]["s per hour of audio"]
    for r in rows:
        r["speed-up"] = round(old_per_hour / r["s per hour of audio"], 1)
    report(
        "listen_speed",
        rows,
        args.out,
        hop_ms=100,
        repeats=args.repeats,
        model="dscnn (untrained), 10 classes, 1 s clips",
    )


def row(method: str, runtime: str, audio: np.ndarray, seconds: tuple[float, float], diff: float | None) -> dict:
    """`seconds`: wall clock and this process's CPU time (both cores' together; less moved by other jobs)."""
    minutes = len(audio) / 16_000 / 60
    wall, cpu = seconds
    return {
        "method": method,
        "network in": runtime,
        "audio min": round(minutes, 1),
        "s": round(wall, 2),
        "s per hour of audio": round(wall * 60 / minutes, 1),
        "CPU s per hour of audio": round(cpu * 60 / minutes, 1),
        "max |p - old p|": None if diff is None else f"{diff:.1e}",
    }


if __name__ == "__main__":
    main()
