"""Who is speaking, from a few clips a person: the labelling page's `--model speaker` features (Resemblyzer's
speaker encoder) against log-mel statistics, each under the page's own quick head (`teach.quick.fit_quick`), on
voices neither ever heard.

The voices: 12 espeak-ng voices (six accents, male and female variants; the encoder was trained on recordings of
real people, never on espeak-ng). Each says 24 ordinary words, every clip at its own speed (140-210 words a
minute) and pitch (30-70 of 99), drawn by the seed, as one person never says two words alike. For each seed and
each number of labelled clips per voice (`--shots`), that many clips of each voice are drawn as the labels and the
other clips are the test: the share whose speaker the head names. The baseline's features are each clip's mean and
standard deviation of its 40 log-mel bands (the same front end as the encoder's), standardised on the labels.

    python benchmarks/voices.py            # ~1 min on 2 cores: 3 seeds
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

VOICES = (
    "en-us+m1",
    "en-us+f2",
    "en-gb+m3",
    "en-gb+f3",
    "en-gb-scotland+m4",
    "en-gb-scotland+f4",
    "en-029+m2",
    "en-029+f1",
    "en-us-nyc+m6",
    "en-gb-x-rp+f5",
    "en-gb-x-gbclan+m7",
    "en-gb-x-gbcwmd+klatt",
)
WORDS = (
    "apple river garden window yellow table morning silver castle orange planet music "
    "paper button forest candle pocket winter basket ladder market pencil island thunder"
).split()


def clips(seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Every voice saying every word at a speed and pitch of its own, 16 kHz, trimmed; and each clip's voice."""
    import soxr

    from deepcat.data.spoken_digits import espeak, trimmed
    from deepcat.inputs.audio import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    found, owner = [], []
    for v, voice in enumerate(VOICES):
        for word in WORDS:
            samples, rate = espeak(voice, word, int(rng.integers(140, 211)), int(rng.integers(30, 71)))
            found.append(trimmed(soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)))
            owner.append(v)
    return found, np.array(owner)


def log_mel_stats(audio: list[np.ndarray]) -> np.ndarray:
    from deepcat.teach.voices import mel_frames

    def one(clip: np.ndarray) -> np.ndarray:
        bands = np.log(mel_frames(clip) + 1e-6)
        return np.concatenate([bands.mean(0), bands.std(0)])

    return np.stack([one(c) for c in audio]).astype(np.float32)


def accuracy(features: np.ndarray, owner: np.ndarray, labelled: np.ndarray, *, standardise: bool) -> float:
    from deepcat.teach.quick import fit_quick

    test = np.setdiff1d(np.arange(len(owner)), labelled)
    x = features
    if standardise:  # on the labels only, as a page would have to
        mean, std = features[labelled].mean(0), features[labelled].std(0) + 1e-6
        x = (features - mean) / std
    names = [VOICES[v] for v in range(len(VOICES))]
    head = fit_quick(x[labelled], [names[v] for v in owner[labelled]], names)
    return float((head.predict_proba(x[test]).argmax(1) == owner[test]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "voices.json"))
    args = parser.parse_args()
    import torch

    from deepcat.teach.voices import embed_voices

    torch.set_num_threads(2)
    rows = []
    for seed in args.seeds:
        audio, owner = clips(seed)
        features = {"speaker encoder": embed_voices(audio), "log-mel statistics": log_mel_stats(audio)}
        rng = np.random.default_rng(1000 + seed)
        for shots in args.shots:
            labelled = np.concatenate(
                [rng.choice(np.flatnonzero(owner == v), shots, replace=False) for v in range(len(VOICES))]
            )
            for method, x in features.items():
                acc = accuracy(x, owner, labelled, standardise=method != "speaker encoder")
                rows.append({"seed": seed, "shots": shots, "method": method, "accuracy": acc})
    summary = [
        {
            "shots": shots,
            "method": method,
            "median": statistics.median(r["accuracy"] for r in rows if r["shots"] == shots and r["method"] == method),
            "min": min(r["accuracy"] for r in rows if r["shots"] == shots and r["method"] == method),
            "max": max(r["accuracy"] for r in rows if r["shots"] == shots and r["method"] == method),
        }
        for shots in args.shots
        for method in ("speaker encoder", "log-mel statistics")
    ]
    report(
        "voices",
        rows,
        args.out,
        summary=summary,
        voices=list(VOICES),
        words=len(WORDS),
        seeds=args.seeds,
        chance=1 / len(VOICES),
    )
    for row in summary:
        print(row)


if __name__ == "__main__":
    main()
