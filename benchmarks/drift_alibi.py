"""The drift benchmark's baseline, run in a Python with alibi-detect (`benchmarks/drift.py --alibi PYTHON`):
Alibi Detect's MMDDrift, as its docs use it, on each stream of penultimate features.

    python drift_alibi.py FEATURES.npz WINDOW EVERY SHIFTED

Each array but `reference` is a stream: for `normal/i`, WINDOW normal inputs; otherwise WINDOW normal inputs then
SHIFTED shifted ones. Every EVERY requests once the window is full, the last WINDOW are tested. Prints one JSON
line: stream -> the requests after the shift until the first detection (None: never; for `normal/i`, 0 when it
detected anything).
"""

import json
import sys

import numpy as np
from alibi_detect.cd import MMDDrift


def main() -> None:
    path, window, every, shifted = sys.argv[1], *map(int, sys.argv[2:5])
    arrays = np.load(path)
    detector = MMDDrift(arrays["reference"].astype(np.float32), backend="pytorch")  # its defaults: p_val 0.05
    found = {}
    for name in arrays.files:
        if name == "reference":
            continue
        stream = arrays[name].astype(np.float32)
        normal = name.startswith("normal/")
        found[name] = None
        ends = [len(stream)] if normal else range(window + every, window + shifted + 1, every)
        for end in ends:
            if detector.predict(stream[end - window : end])["data"]["is_drift"]:
                found[name] = 0 if normal else end - window
                break
    print(json.dumps(found))


if __name__ == "__main__":
    main()
