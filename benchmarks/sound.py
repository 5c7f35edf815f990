"""Sound: `deepcat train spoken-digits` against a classical baseline, on the test split's voices that training
never hears, in one run.

deepcat: the default recipe (DS-CNN on the 40-band log-mel spectrogram inside the model, 10 epochs), trained on
the training voices (19 of the 24; 5 are held out for validation), timed from the call to `deepcat.train` to
the end of training (`metrics.csv`'s epoch seconds) and to the finished run (calibration, evaluation, report).
Then ONNX fp32 against PyTorch on every test clip, and the int8 export's own agreement check.

Keyword spotting (`deepcat listen`, default settings) over one long recording: every test clip's word (unheard
voices), each after a pause of 0.8-2 s, between OTHER_WORDS spoken by the test voices (speech that holds no
digit), under noise 20 dB below the speech: the share of digits reported with their label by 1 s after the word
ends, false activations per hour, and the latency from the end of the word to its report.

Baseline: MFCC features (13 coefficients and their deltas from a 40-band log-mel spectrogram, 25 ms windows,
10 ms hop; mean and standard deviation over time, plus the coefficients of 10 equal time slices), standardised,
then scikit-learn's logistic regression and an RBF SVM, fitted on the same training clips as deepcat (the
validation voices are held out from both). Each one's regularisation (C) is chosen by 5-fold cross-validation on
the training clips, grouped by voice variant so that a fold's voices are unheard as the test's are, then refitted
on them all. Feature extraction and the search are timed with the fit.

    python benchmarks/sound.py          # ~5 min on 2 cores (the first run also generates the data, ~1 min)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def mfcc_features(
    clip: np.ndarray, *, rate: int = 16_000, n_mels: int = 40, n_mfcc: int = 13, slices: int = 10
) -> np.ndarray:
    """A fixed-length summary of one clip's MFCCs (numpy and scipy only)."""
    from scipy.fft import dct

    from deepcat.inputs.audio_tensors import mel_filterbank

    window, hop, n_fft = 400, 160, 512
    padded = np.pad(clip, (window // 2, window // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop] * np.hanning(window)
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2  # (frames, bins)
    mel = np.log(np.maximum(power @ mel_filterbank(n_mels, n_fft, rate).T, 1e-6))
    mfcc = dct(mel, type=2, axis=1, norm="ortho")[:, :n_mfcc]  # (frames, 13)
    delta = np.gradient(mfcc, axis=0)
    both = np.concatenate([mfcc, delta], axis=1)
    sliced = np.stack([part.mean(0) for part in np.array_split(mfcc, slices)]).ravel()
    return np.concatenate([both.mean(0), both.std(0), sliced]).astype(np.float32)


def load_clips(samples) -> tuple[np.ndarray, np.ndarray]:
    from deepcat.inputs.audio import fit_length, read_clip

    return np.stack([fit_length(read_clip(p), 16_000) for p in samples.items]), samples.labels


def voice(path: Path) -> str:
    """A spoken-digits clip's voice variant (`ACCENT+VARIANT-RENDITION.wav`): what the test split never hears."""
    return path.stem.split("+", 1)[1].rsplit("-", 1)[0]


C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def baselines(splits) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    (train, y_train), (test, y_test) = load_clips(splits.train), load_clips(splits.test)
    voices = [voice(Path(p)) for p in splits.train.items]
    rows = []
    for name, model in (
        ("MFCC + logistic regression", LogisticRegression(max_iter=3000)),
        ("MFCC + RBF SVM", SVC(gamma="scale")),
    ):
        started = time.perf_counter()
        x_train = np.stack([mfcc_features(c) for c in train])
        pipeline = make_pipeline(StandardScaler(), model)
        step = pipeline.steps[-1][0]
        search = GridSearchCV(pipeline, {f"{step}__C": list(C_GRID)}, cv=GroupKFold(n_splits=5), n_jobs=1)
        search.fit(x_train, y_train, groups=voices)
        seconds = time.perf_counter() - started
        accuracy = float((search.predict(np.stack([mfcc_features(c) for c in test])) == y_test).mean())
        rows.append(
            {
                "method": f"{name} (C={search.best_params_[f'{step}__C']:g} by grouped 5-fold CV)",
                "train clips": len(y_train),
                "test clips": len(y_test),
                "test accuracy (unheard voices)": accuracy,
                "cross-validated accuracy": float(search.best_score_),
                "training s": seconds,
                "finished run s": seconds,
            }
        )
    return rows


# speech that is no digit, some of it close to one ("eleven", "seventeen", "nineteen", "tree")
OTHER_WORDS = ("hello", "water", "table", "yesterday", "eleven", "twenty", "seventeen", "nineteen", "tree", "often")


def keyword_spotting(run: Path, root: Path) -> dict:
    """`deepcat listen` over a recording of every test clip's word between other speech (see the docstring)."""
    import zlib

    import deepcat
    from deepcat.data import spoken_digits
    from deepcat.inference.listen import Spotting, scored
    from deepcat.inputs.audio import SAMPLE_RATE, read_clip, to_mono_16k

    clips = sorted((root / "test").rglob("*.wav"))
    words = [(clip.parent.name, spoken_digits.trimmed(read_clip(clip))) for clip in clips]
    voices = sorted({clip.stem.rsplit("-", 1)[0] for clip in clips})
    others = []
    for word in OTHER_WORDS:
        for voice in voices[:: max(1, len(voices) // 6)]:  # six test voices each
            rng = np.random.default_rng(zlib.crc32(f"{voice}/{word}".encode()))
            samples, rate = spoken_digits.espeak(voice, word, int(rng.integers(130, 211)), int(rng.integers(25, 76)))
            others.append(spoken_digits.trimmed(to_mono_16k(samples, rate)))
    recording, truth = spoken_digits.keyword_stream(words, others, seed=0)
    started = time.perf_counter()
    found = deepcat.listen(run, recording, spotting=Spotting())
    seconds = time.perf_counter() - started
    result = scored(found, truth, len(recording) / SAMPLE_RATE)
    return {
        "settings": dataclasses.asdict(Spotting()),
        "digits_spoken": result.words,
        "other_words_spoken": len(others),
        "recording_minutes": len(recording) / SAMPLE_RATE / 60,
        "detection_rate": result.detection_rate,
        "false_activations": result.false_activations,
        "false_activations_per_hour": result.false_per_hour,
        "median_latency_s": result.median_latency_s,
        "listen_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sound.json"))
    args = parser.parse_args()

    import deepcat
    from deepcat.data import spoken_digits
    from deepcat.data.builtin import default_root
    from deepcat.data.resolve import resolve_data
    from deepcat.inference.exported import load_exported

    root = spoken_digits.generate(default_root(None) / "spoken-digits")
    splits = resolve_data("spoken-digits")  # the same training clips for every method; val: deepcat's only
    words = splits.classes
    rows = baselines(splits)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = deepcat.train(data="spoken-digits", output=tmp, name="spoken-digits", progress=False)
        finished = time.perf_counter() - started
        epochs = list(csv.DictReader((run / "metrics.csv").open()))
        test = json.loads((run / "test_metrics.json").read_text())
        rows.insert(
            0,
            {
                "method": "deepcat train spoken-digits (DS-CNN, 10 epochs)",
                "train clips": len(splits.train),
                "test clips": test["images"],
                "test accuracy (unheard voices)": test["accuracy"],
                "training s": sum(float(e["seconds"]) for e in epochs),
                "finished run s": finished,
            },
        )
        clips = sorted(str(p) for p in (root / "test").rglob("*.wav"))
        fp32 = deepcat.export(run, format="onnx", progress=False)
        torch_side = deepcat.load(run).predict(clips, top_k=len(words))
        onnx_side = load_exported(fp32.path).predict(clips, top_k=len(words))
        parity = max(abs(a[1] - b[1]) for p, q in zip(torch_side, onnx_side) for a, b in zip(p.top, q.top))
        try:
            int8 = deepcat.export(run, format="onnx-int8", progress=False).to_dict()["check"]
        except deepcat.DeepcatError as refused:
            int8 = {"refused": str(refused)}
        spotting = keyword_spotting(run, root)
    report(
        "sound",
        rows,
        args.out,
        onnx_fp32_max_abs_diff_test_clips=parity,
        onnx_fp32_test_clips=len(clips),
        onnx_int8_check=int8,
        keyword_spotting=spotting,
        epochs=[{k: float(v) for k, v in e.items() if v} for e in epochs],
    )
    print(f"ONNX fp32 vs PyTorch on {len(clips)} test clips: max |diff| of probabilities {parity:.2e}")
    print(f"int8: {int8}")
    print(f"keyword spotting: {spotting}")


if __name__ == "__main__":
    main()
