"""`deepcat listen`'s fast path on real speech: windows sliced from log-mel frames computed once give each window's
probabilities as the window classified alone does, in PyTorch and in ONNX Runtime, from a file or in blocks; and
streaming memory stays bounded over a long stream."""

import shutil

import numpy as np
import pytest
import torch

from deepcat.inference import listen_windows
from deepcat.inference.listen import (
    Spotting,
    listen_stream,
    window_probabilities,
    window_probabilities_one_by_one,
    window_starts,
)
from deepcat.inference.torch_model import Classifier
from deepcat.inputs.audio import AudioPreprocess, to_mono_16k

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng")
PRE = AudioPreprocess()


def linear_classifier(threshold: float | None = None) -> Classifier:
    """A linear model over every spectrogram value: unlike an untrained CNN, which pools its input to nearly the
    same answer, every frame moves its probabilities."""
    from deepcat.run_meta import Calibration

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(PRE.n_mels * 101, 3))
    torch.nn.init.normal_(model[1].weight, std=0.02)
    return Classifier(model, ["six", "nine", "_unknown_"], PRE, "linear", calibration=Calibration(threshold=threshold))


@pytest.fixture(scope="module")
def recording() -> np.ndarray:
    from deepcat.data import spoken_digits

    words = [
        ("six", spoken_digits.trimmed(to_mono_16k(*spoken_digits.espeak(voice, word, 160, 50))))
        for voice, word in (("en-us", "six"), ("en-gb+f2", "nine"), ("en-us+m3", "seven"))
    ]
    return spoken_digits.keyword_stream(words, [], seed=0)[0]


@needs_espeak
def test_shared_frames_give_each_windows_own_probabilities(recording, monkeypatch):
    hop = 1_600
    windows = [recording[s : s + PRE.samples] for s in window_starts(len(recording), PRE.samples, hop)]
    scores = linear_classifier().infer(torch.stack([linear_classifier().transform(w) for w in windows]))[1]
    middle = scores.sort().values[len(windows) // 2 - 1 : len(windows) // 2 + 1]
    classifier = linear_classifier(threshold=float(middle.mean()))  # half the windows `unknown`, none on the line
    alone = window_probabilities_one_by_one(classifier, windows, reject=True, batch_size=16)
    assert (alone.sum(1) == 0).sum() >= len(windows) // 3 and alone[alone.sum(1) > 0].std(0).min() > 0.01
    starts, fast = window_probabilities(classifier, recording, hop_ms=100, batch_size=16)
    assert starts.tolist() == [s for s in range(0, len(recording) - PRE.samples + 1, hop)]
    np.testing.assert_allclose(fast, alone, atol=2e-5)
    monkeypatch.setattr(listen_windows, "EXPORT_PAYS_AFTER", 0)  # the network in ONNX Runtime
    np.testing.assert_allclose(window_probabilities(classifier, recording, hop_ms=100)[1], alone, atol=2e-5)
    # a hop that is no whole number of frames: the windows share no frames and are still their own
    odd = [recording[s : s + PRE.samples] for s in window_starts(len(recording), PRE.samples, 1_000)]
    np.testing.assert_allclose(
        window_probabilities(classifier, recording, hop_ms=62.5)[1],
        window_probabilities_one_by_one(classifier, odd, reject=True, batch_size=16),
        atol=2e-5,
    )


@needs_espeak
def test_streamed_in_uneven_blocks_the_windows_are_the_files(recording):
    windows = listen_windows.StreamWindows(PRE, 1_600, batch=8)
    whole = np.concatenate([x for _, x in listen_windows.StreamWindows(PRE, 1_600).add(recording)])
    sizes = np.random.default_rng(0).integers(1, 9_000, size=len(recording) // 1_000)
    blocks = np.split(recording, np.cumsum(sizes)[np.cumsum(sizes) < len(recording)])
    streamed = np.concatenate([x for block in blocks for _, x in windows.add(block)])
    np.testing.assert_array_equal(streamed, whole)


def resident_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="reads /proc (Linux)")
def test_streaming_memory_does_not_grow_with_the_stream():
    """Eight minutes of speech-like sound in 100 ms blocks (made as they are played, so the test holds none of
    it): resident memory after the first minute and at the end are the same, within a few MB."""
    rng = np.random.default_rng(0)
    tone = np.sin(np.arange(PRE.samples) * 2 * np.pi * 440 / 16_000).astype(np.float32)
    sampled: list[float] = []

    def blocks(minutes: int = 8):
        for i in range(minutes * 600):
            noise = rng.normal(scale=0.05, size=1_600).astype(np.float32)
            yield noise + (tone[(i % 10) * 1_600 : (i % 10 + 1) * 1_600] if i % 30 < 10 else 0)
            if i % 600 == 599:
                sampled.append(resident_mb())

    classifier = linear_classifier()
    found = list(listen_stream(classifier, blocks(), Spotting(threshold=0.99)))
    assert len(sampled) == 8 and found is not None
    assert max(sampled[1:]) - sampled[1] < 8, sampled  # MB: flat after the first minute


@needs_espeak
def test_at_the_ends_of_a_recording_nothing_is_reported_from_a_file_or_a_stream(recording):
    from deepcat.inference.listen import listen, spot

    classifier = linear_classifier()
    eager = Spotting(smooth=1, threshold=0.34, refractory_ms=0)  # every window over it: six or nine
    found = listen(classifier, recording, eager)
    starts, probabilities = window_probabilities(classifier, recording, hop_ms=100)
    ends = (starts + PRE.samples) / 16_000
    unguarded = spot(probabilities, ends, classifier.classes, eager)
    assert unguarded[0].seconds == ends[0] and unguarded[-1].seconds == round(ends[-1], 3)  # would have spoken
    assert found == unguarded[1:-1]
    streamed = list(listen_stream(classifier, np.array_split(recording, 23), eager))  # its network in ONNX Runtime
    assert [(d.label, d.seconds) for d in streamed] == [(d.label, d.seconds) for d in found]
    np.testing.assert_allclose([d.score for d in streamed], [d.score for d in found], atol=2e-5)


@needs_espeak
@pytest.mark.slow
def test_a_run_with_non_word_clips_saves_thresholds_for_a_false_alarm_rate(tmp_path, recording):
    """After training, each keyword's false-alarm curve over val's `_silence_` and `_unknown_` clips is in
    model.json and the export; `deepcat listen --false-alarms-per-hour` picks from it."""
    import json
    import subprocess
    import sys

    import soundfile as sf

    import deepcat
    from deepcat.data import spoken_digits
    from deepcat.inference.exported import load_exported
    from deepcat.run_folder import read_model_json

    data = spoken_digits.generate(
        tmp_path / "data",
        words=("six", "nine"),
        accents=("en-us", "en-gb"),
        train_variants=("m1", "f2", "m3", "klatt"),
        test_variants=("f5",),
        test_accents=(),
        progress=False,
    )
    run = deepcat.train(
        data=str(data), output=str(tmp_path / "runs"), name="r", epochs=3, batch_size=16, progress=False
    )
    calibration = read_model_json(run).calibration
    assert calibration is not None and calibration.false_alarms is not None, calibration
    curves, hours = calibration.false_alarms, calibration.false_alarm_hours
    assert set(curves) == {"six", "nine"} and hours is not None and hours > 0
    assert all(len(curve) == 71 and curve[0][0] == 0.3 and curve[-1][0] == 1.0 for curve in curves.values())
    assert all(
        rate >= 0 and rate * hours == pytest.approx(round(rate * hours))
        for curve in curves.values()
        for _, rate in curve
    )
    exported = deepcat.export(run, format="onnx", progress=False).path
    assert load_exported(exported).meta.calibration_or_default.false_alarms == curves
    path = tmp_path / "long.wav"
    sf.write(path, recording, 16_000)
    given = [sys.executable, "-m", "deepcat", "listen", str(exported), str(path), "--json", "--quiet"]
    printed = subprocess.run([*given, "--false-alarms-per-hour", "1"], capture_output=True, text=True, check=True)
    assert isinstance(json.loads(printed.stdout), list)
