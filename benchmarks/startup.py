"""Start-up time of the command line: `deepcat --help`, and predicting one photo with an exported ONNX model,
against baselines in the same run: the bare interpreter, `import torch`, and the same prediction from the
run folder (PyTorch path). Each command runs 7 times in a fresh process; medians are reported.

    python benchmarks/startup.py        # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

ROOT = Path(__file__).parent.parent
DEEPCAT = (
    [sys.executable, "-m", "deepcat"]
    if not (Path(sys.executable).parent / "deepcat").is_file()
    else [str(Path(sys.executable).parent / "deepcat")]
)


def median_seconds(command: list[str], repeats: int = 7) -> float:
    subprocess.run(command, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "startup.json"))
    args = parser.parse_args()

    import deepcat
    from deepcat import export

    photo = str(ROOT / "examples" / "chelsea.jpg")
    with tempfile.TemporaryDirectory() as tmp:
        run = deepcat.train(data="digits", epochs=2, output=tmp, name="d", progress=False)
        model = export(run, format="onnx", progress=False).path
        commands = {
            "python -c pass (interpreter, baseline)": [sys.executable, "-c", "pass"],
            "python -c 'import torch' (baseline)": [sys.executable, "-c", "import torch"],
            "deepcat --help": DEEPCAT + ["--help"],
            "deepcat predict model.onnx photo.jpg": DEEPCAT + ["predict", model, photo],
            "deepcat predict RUN photo.jpg (PyTorch path)": DEEPCAT + ["predict", str(run), photo],
        }
        rows = [{"command": name, "median_seconds": median_seconds(cmd)} for name, cmd in commands.items()]
    report("startup", rows, args.out, targets={"deepcat --help": 0.5, "deepcat predict model.onnx photo.jpg": 1.0})


if __name__ == "__main__":
    main()
