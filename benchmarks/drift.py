"""Does the server's monitor notice what its model was not trained for, and how close is its label-free accuracy?

The model: the default recipe (`deepcat train DATA`) on all classes but two, exported to ONNX, its answers computed
by ONNX Runtime as the server's are and fed to the server's own `Monitor` (`inference/monitor.py`), request by
request. Normal traffic is the held-out test split of the known classes; then one of these shifts:
- `unseen 30%`: 30% of the inputs from the two classes the model never saw;
- images: Gaussian blur, Gaussian noise, brightness at severities 3 and 5, with Tiny ImageNet-C's parameters (made
  for 64 px images, the nearest to these 28 px ones); JPEG at quality 10;
- sound (spoken-digits, the test split's voices unheard in training): a telephone line (8 kHz, 300-3,400 Hz), a
  room with 0.3 s and one with 0.6 s of reverberation, the telephone line in the 0.6 s room. The default recipe
  trains with 8 kHz and room copies (`--augment strong`), so its answers hold up there: the question is whether the
  monitor still sees the inputs change.

For each: the requests after the shift began until the alarm (checked every 10 requests; "detected" within 500),
the accuracy the monitor estimates without labels (ATC) after 500 shifted requests against the true one of its
window (inputs of an unseen class are never right), beside the mean calibrated confidence (CBPE's estimate, which
the monitor does not use: it measured further off), and the false alarms over 20 windows of normal traffic.
The baseline, in the same run: Alibi Detect's `MMDDrift` (its PyTorch backend, its own defaults: p-value 0.05,
100 permutations) on the model's penultimate features, reference 500 validation inputs, tested every 100
requests on the last 500. It runs in its own virtual environment (alibi-detect pins numpy 1.x):
`python -m venv .alibi && .alibi/bin/pip install torch==2.13.0 alibi-detect`, then `--alibi .alibi/bin/python`.

    python benchmarks/drift.py --data fashion-mnist --seeds 0 1 2 --alibi /work/.alibi-venv/bin/python
    python benchmarks/drift.py --data spoken-digits --seeds 0 1 2 --alibi /work/.alibi-venv/bin/python
    python benchmarks/drift.py --data digits --window 100        # a minute: the script works
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

HELD_OUT = {"digits": ("8", "9"), "fashion-mnist": ("bag", "ankle-boot"), "spoken-digits": ("eight", "nine")}
SOUND = ("spoken-digits",)
NORMAL_WINDOWS = 20
CHECK_EVERY = 10  # requests between two looks at the monitor
MMD_EVERY = 100  # requests between two MMD tests (each is a permutation test: seconds, not microseconds)
SHIFTED = 500  # shifted requests sent after the normal ones


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([np.clip(gaussian_filter(img.astype(np.float32), sigma), 0, 255) for img in images]).astype(
        np.uint8
    )


def noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    noisy = images / 255.0 + rng.normal(0, std, images.shape)
    return (np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def brightness(images: np.ndarray, amount: float) -> np.ndarray:
    """ImageNet-C's brightness adds to HSV's value; for grey images that is the intensity."""
    return (np.clip(images / 255.0 + amount, 0, 1) * 255).astype(np.uint8)


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    return np.stack(out)


def shifts(data: str, rng: np.random.Generator) -> dict[str, object]:
    """Name -> inputs -> shifted inputs (images: Tiny ImageNet-C's severities 3 and 5)."""
    if data in SOUND:
        return sound_shifts(rng)
    return {
        "blur 3": lambda x: blur(x, 1.0),
        "blur 5": lambda x: blur(x, 1.5),
        "noise 3": lambda x: noise(x, 0.12, rng),
        "noise 5": lambda x: noise(x, 0.18, rng),
        "brightness 3": lambda x: brightness(x, 0.3),
        "brightness 5": lambda x: brightness(x, 0.5),
        "jpeg q10": lambda x: jpeg(x, 10),
    }


def sound_shifts(rng: np.random.Generator) -> dict[str, object]:
    """Name -> clips -> the clips as a telephone line or a room gives them (one room each, as one site is)."""
    from degrade import at_8khz, in_room, room_response

    room_3, room_6 = room_response(0.3, rng), room_response(0.6, rng)

    def each(clips: np.ndarray, change) -> np.ndarray:
        return np.stack([change(clip) for clip in clips]).astype(clips.dtype)

    return {
        "telephone": lambda x: each(x, lambda c: at_8khz(c, telephone_band=True)),
        "room 0.3 s": lambda x: each(x, lambda c: in_room(c, room_3)),
        "room 0.6 s": lambda x: each(x, lambda c: in_room(c, room_6)),
        "telephone, room 0.6 s": lambda x: each(x, lambda c: in_room(at_8khz(c, telephone_band=True), room_6)),
    }


def test_inputs(data: str, samples) -> np.ndarray:
    """A split's inputs as arrays: images as stored, clips read and fitted to the model's second."""
    if data not in SOUND:
        return np.asarray(samples.items)
    from sound import load_clips

    return load_clips(samples)[0]


def answers(clf, images: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The exported model's (N, K) calibrated probabilities and (N,) `unknown` scores, as the server gets them."""
    probabilities, scores = [], []
    for start in range(0, len(images), 256):
        for p in clf.predict(list(images[start : start + 256]), top_k=classes, reject=False, batch_size=256):
            row = np.zeros(classes, np.float32)
            for label, prob in p.top:
                row[clf.classes.index(label)] = prob
            probabilities.append(row)
            scores.append(p.score)
    return np.stack(probabilities), np.array(scores, np.float32)


def monitor_stream(make_monitor, probabilities, scores, stream: np.ndarray, shift_at: int) -> dict:
    """Feed `stream` (indices into the answers) to a fresh monitor; the requests after `shift_at` until the
    alarm, and the report after the last request."""
    monitor = make_monitor()
    alarm_after, before = None, False
    for start in range(0, len(stream), CHECK_EVERY):
        chunk = stream[start : start + CHECK_EVERY]
        monitor.observe(probabilities[chunk], scores[chunk])
        if start + len(chunk) == shift_at:
            before = monitor.report()["alarm"]
        if start + len(chunk) > shift_at and alarm_after is None and monitor.report()["alarm"]:
            alarm_after = start + len(chunk) - shift_at
    return {"alarm_after": alarm_after, "alarm_before": before, "report": monitor.report()}


def mmd_baseline(alibi_python: str, reference: np.ndarray, streams: dict[str, np.ndarray], window: int) -> dict:
    """Alibi Detect's MMDDrift on each stream's features, run in its own environment: name -> the requests after
    the shift until it detected (None: never), and for `normal/i` whether it detected at all."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "features.npz", reference=reference, **streams)
        script = Path(__file__).with_name("drift_alibi.py")
        done = subprocess.run(
            [alibi_python, str(script), str(Path(tmp) / "features.npz"), str(window), str(MMD_EVERY), str(SHIFTED)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_seed(data: str, seed: int, window: int, epochs: int | None, alibi: str | None) -> list[dict]:
    import torch

    import deepcat
    from deepcat import export
    from deepcat.data.resolve import resolve_data
    from deepcat.evaluation.scores import Scoring, features_of
    from deepcat.inference.exported import load_exported
    from deepcat.inference.monitor import monitor_for
    from deepcat.inference.unknown_score import WithFeatures, classifier_layer
    from deepcat.run_folder import load_model

    rng = np.random.default_rng(seed)
    full = resolve_data(data)
    known = [c for c in full.classes if c not in HELD_OUT[data]]
    splits = resolve_data(data, classes=",".join(known))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        options = {} if epochs is None else {"epochs": epochs}
        run = deepcat.train(
            data=data, classes=",".join(known), output=tmp, name="drift", seed=seed, progress=False, **options
        )
        trained_s = time.perf_counter() - started
        clf = load_exported(export(run, format="onnx", progress=False).path)
        calibration = clf.meta.calibration_or_default
        test_known = test_inputs(data, splits.test)
        in_unseen = np.isin(np.array(full.classes)[full.test.labels], HELD_OUT[data])
        unseen = test_inputs(data, full.test.subset(np.flatnonzero(in_unseen)))
        conditions = {name: shift(test_known) for name, shift in shifts(data, rng).items()}
        images = {"normal": test_known, "unseen": unseen, **conditions}
        outputs = {name: answers(clf, x, len(known)) for name, x in images.items()}
        truth = {name: splits.test.labels for name in ("normal", *conditions)}
        model, meta = load_model(run)
        how = Scoring(meta.preprocess, torch.device("cpu"), progress=False)
        tapped = WithFeatures(model, classifier_layer(model, classes=len(known)))
        features = {
            name: features_of(model, _samples(x), how, classes=len(known), tapped=tapped)[0]
            for name, x in images.items()
        }
        val_features = features_of(model, splits.val, how, classes=len(known), tapped=tapped)[0]

    def make_monitor():
        return monitor_for(known, calibration, window=window)

    # every stream: `window` normal requests, then SHIFTED of the condition (indices into a concatenation)
    probabilities = np.concatenate([outputs[n][0] for n in images])
    scores = np.concatenate([outputs[n][1] for n in images])
    all_features = np.concatenate([features[n] for n in images])
    offset, start = {}, 0
    for name in images:
        offset[name], start = start, start + len(images[name])
    normal = offset["normal"] + np.arange(len(test_known))

    def draw(name: str, n: int) -> np.ndarray:
        return offset[name] + rng.integers(0, len(images[name]), n)

    rows, streams, meta_rows = [], {}, {}
    normal_alarms = 0
    for i in range(NORMAL_WINDOWS):
        stream = rng.choice(normal, window)
        normal_alarms += bool(monitor_stream(make_monitor, probabilities, scores, stream, 0)["report"]["alarm"])
        streams[f"normal/{i}"] = all_features[stream]
    for name in ["unseen 30%", *conditions]:
        if name == "unseen 30%":
            shifted = np.where(rng.random(SHIFTED) < 0.3, draw("unseen", SHIFTED), draw("normal", SHIFTED))
        else:
            shifted = draw(name, SHIFTED)
        stream = np.concatenate([rng.choice(normal, window), shifted])
        found = monitor_stream(make_monitor, probabilities, scores, stream, window)
        # the truth: an unseen class's input is never right; a shifted one is right when its top class is its label
        labels = np.concatenate([truth["normal"], np.full(len(unseen), -1)] + [truth[n] for n in conditions])
        last = stream[-window:]  # the window the monitor's report is about
        right = float((probabilities[last].argmax(1) == labels[last - offset["normal"]]).mean())
        estimate = found["report"]["accuracy"]["estimate"]
        meta_rows[name] = {
            "data": data,
            "seed": seed,
            "shift": name,
            "alarm after": found["alarm_after"],
            "alarm before shift": found["alarm_before"],
            "detected": found["alarm_after"] is not None and found["alarm_after"] <= SHIFTED,
            "reasons": "; ".join(found["report"]["reasons"]),
            "accuracy": right,
            "estimated": estimate,
            "error (points)": 100 * (estimate - right),
            "cbpe": float(probabilities[stream[-window:]].max(1).mean()),
        }
        streams[name] = all_features[stream]
    mmd = mmd_baseline(alibi, features_mmd_reference(val_features, rng), streams, window) if alibi else None
    rows.append(
        {
            "data": data,
            "seed": seed,
            "shift": "none (20 windows)",
            "false alarms": normal_alarms / NORMAL_WINDOWS,
            "mmd false alarms": None if mmd is None else sum(mmd[f"normal/{i}"] is not None for i in range(20)) / 20,
            "train s": trained_s,
        }
    )
    for name, row in meta_rows.items():
        row["mmd alarm after"] = None if mmd is None else mmd[name]
        rows.append(row)
    return rows


def features_mmd_reference(val_features: np.ndarray, rng: np.random.Generator, size: int = 500) -> np.ndarray:
    """The baseline's reference: as many validation inputs as the monitor's reference sample keeps."""
    return val_features[rng.permutation(len(val_features))[:size]]


def _samples(images: np.ndarray):
    from deepcat.data.sources import Samples

    return Samples(images, np.zeros(len(images), dtype=np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fashion-mnist", choices=tuple(HELD_OUT))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--window", type=int, default=500, help="the monitor's window (the server's default: 500)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's own")
    parser.add_argument("--alibi", default=None, help="a Python with alibi-detect (the baseline; off without it)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = [row for seed in args.seeds for row in one_seed(args.data, seed, args.window, args.epochs, args.alibi)]
    out = args.out or Path(__file__).parent / "results" / f"drift_{args.data}.json"
    report("drift", rows, out, hide=("reasons",), window=args.window, check_every=CHECK_EVERY, mmd_every=MMD_EVERY)


if __name__ == "__main__":
    main()
