"""Keyword spotting's arithmetic: windows over a recording, smoothing, thresholds, the refractory period and how
detections are scored against the words spoken (the end-to-end test on speech is in test_sound.py)."""

import numpy as np

from deepcat.inference.listen import Detection, Spotter, Spotting, scored, spot, window_starts


def test_windows_cover_the_recording_and_a_short_one_is_one_window():
    assert window_starts(16_000 * 3, 16_000, 1_600).tolist() == list(range(0, 32_001, 1_600))
    assert window_starts(8_000, 16_000, 1_600).tolist() == [0]


def test_smoothing_averages_each_window_with_those_just_before_it():
    spotter = Spotter(["a", "b"], Spotting(smooth=2, threshold=0.75, refractory_ms=0))
    rows = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    found = [spotter.push(np.array(row), end) for end, row in enumerate(rows)]
    assert found == [Detection("a", 0, 1.0), None, Detection("b", 2, 1.0), None, Detection("a", 4, 1.0)]


def test_a_word_seen_in_several_windows_is_reported_once_and_non_words_never():
    classes = ["_silence_", "six", "nine"]
    rows = [[1, 0, 0]] * 5 + [[0.1, 0.9, 0.0]] * 6 + [[1, 0, 0]] * 4 + [[0, 0, 1]] * 5 + [[0, 0.8, 0.2]] * 2
    ends = np.arange(1, len(rows) + 1) * 0.1
    found = spot(np.array(rows), ends, classes, Spotting(smooth=2, threshold=0.7, refractory_ms=1000))
    assert [(d.label, d.seconds) for d in found] == [("six", 0.7), ("nine", 1.7)]  # "six" at 2.1 s: too soon
    strict = Spotting(smooth=3, threshold=0.95)  # only three windows of "nine" in a row reach it
    assert spot(np.array(rows), ends, classes, strict) == [Detection("nine", 1.8, 1.0)]


def test_a_class_can_have_its_own_threshold():
    import pytest

    from deepcat.errors import DeepcatError

    rows = np.array([[0.8, 0.2], [0.2, 0.8], [0.6, 0.4]])
    ends = np.array([1.0, 2.0, 3.0])
    shared = Spotting(smooth=1, threshold=0.7, refractory_ms=0)
    assert [d.label for d in spot(rows, ends, ["six", "nine"], shared)] == ["six", "nine"]
    own = Spotting(smooth=1, threshold=0.7, refractory_ms=0, thresholds={"six": 0.9, "nine": 0.5})
    assert [(d.label, d.seconds) for d in spot(rows, ends, ["six", "nine"], own)] == [("nine", 2.0)]
    # a word under its own threshold does not hide one over its own, even a less likely one
    low = Spotting(smooth=1, thresholds={"nine": 0.3})
    assert [d.label for d in spot(np.array([[0.6, 0.4]]), ends[:1], ["six", "nine"], low)] == ["nine"]
    with pytest.raises(DeepcatError, match=r"\['seven'\], which the model does not hear"):
        Spotter(["six", "nine"], Spotting(thresholds={"seven": 0.5}))
    with pytest.raises(DeepcatError, match="above 0 and at most 1"):
        Spotter(["six", "nine"], Spotting(thresholds={"six": 1.5}))


def test_class_thresholds_from_the_command_line(capsys):
    import pytest

    from deepcat.cli.parser import build_parser

    given = ["listen", "run", "a.wav", "--class-threshold", "six=0.9", "--class-threshold", "_x_=0.5"]
    assert build_parser().parse_args(given).thresholds == {"six": 0.9, "_x_": 0.5}  # as Spotting holds them
    with pytest.raises(SystemExit):
        build_parser().parse_args(["listen", "run", "a.wav", "--class-threshold", "six"])
    assert "give CLASS=PROBABILITY, e.g. six=0.9" in capsys.readouterr().err


def test_detections_are_scored_against_the_words_spoken():
    words = [("six", 1.0, 1.5), ("nine", 4.0, 4.6), ("six", 8.0, 8.4)]
    detections = [Detection("six", 1.8, 0.9), Detection("nine", 2.5, 0.8), Detection("six", 9.9, 0.9)]
    result = scored(detections, words, seconds=3600, late_s=1.0)
    assert (result.detected, result.false_activations, result.latencies_s) == (1, 2, [0.3])
    assert result.detection_rate == 1 / 3 and result.false_per_hour == 2.0


def test_listen_needs_a_recording_or_the_microphone_and_says_what_the_microphone_needs(tmp_path):
    import subprocess
    import sys

    neither = subprocess.run([sys.executable, "-m", "deepcat", "listen", str(tmp_path)], capture_output=True, text=True)
    assert neither.returncode == 2 and "RECORDING or to the microphone (--mic)" in neither.stderr
    # without sounddevice (CI installs none) or without a microphone (a server has none): one line, before any
    # model loads (this folder holds none)
    mic = subprocess.run(
        [sys.executable, "-m", "deepcat", "listen", str(tmp_path), "--mic"], capture_output=True, text=True
    )
    assert mic.returncode == 2 and "microphone" in mic.stderr and "Traceback" not in mic.stderr, mic.stderr


def test_a_recordings_first_and_last_windows_report_nothing_but_still_smooth():
    """The recording's edges (an encoder's padding, a word cut by the end) are no keyword; a word heard in the
    windows next to them still is, and an edge's suppressed report starts no refractory period."""
    rows = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.1], [0.1, 0.1], [0.1, 0.9]])
    ends = np.arange(1, 6.0)
    spotting = Spotting(smooth=1, threshold=0.7, refractory_ms=5000)
    assert [d.seconds for d in spot(rows, ends, ["six", "nine"], spotting)] == [1.0]  # the edge hid the next one
    at_edges = spot(rows, ends, ["six", "nine"], spotting, edges=True)
    assert at_edges == [Detection("six", 2.0, 0.9)]  # the first window's is not said, the last window's "nine" not
    smoothed = spot(rows[-2:], ends[-2:], ["six", "nine"], Spotting(smooth=2, threshold=0.5), edges=True)
    assert smoothed == []  # the end of the recording: the word only its last window holds is not a keyword


def test_each_keywords_threshold_is_picked_for_a_false_alarm_rate_on_a_negative_stream():
    """Half an hour of no keyword: "six" rises to 0.9 twice, 0.8 once more and 0.6 in four more places (one of
    them twice within the refractory second, one in the recording's last window); "nine" never passes 0.5."""
    from deepcat.inference.false_alarms import false_alarm_curve, thresholds_for

    rows = np.zeros((18_000, 3))
    rows[:, 2] = 1.0  # `_unknown_`: never a keyword, never a curve
    for at, p in [(100, 0.9), (5_000, 0.9), (9_000, 0.8), (12_000, 0.6), (12_005, 0.6), (13_000, 0.6), (17_999, 0.6)]:
        rows[at] = [p, 0.0, 1 - p]
    rows[15_000] = [0.6, 0.4, 0.0]
    rows[16_000] = [0.0, 0.45, 0.55]
    curves = false_alarm_curve(rows, ["six", "nine", "_unknown_"], Spotting(smooth=1), hours=0.5)
    assert set(curves) == {"six", "nine"}
    heard = spot(
        rows, np.arange(18_000) / 10, ["six", "nine", "_unknown_"], Spotting(smooth=1, threshold=0.6), edges=True
    )
    assert [d.label for d in heard].count("six") == 6  # what listen itself reports at 0.6, as the curve counts
    six = dict((t, rate) for t, rate in curves["six"])
    assert (six[0.6], six[0.61], six[0.8], six[0.81], six[0.9], six[0.91]) == (12.0, 6.0, 6.0, 4.0, 4.0, 0.0)
    assert dict((t, rate) for t, rate in curves["nine"])[0.45] == 2.0
    assert thresholds_for(curves, 1.0) == {"six": 0.91, "nine": 0.46}
    assert thresholds_for(curves, 4.0) == {"six": 0.81, "nine": 0.3}  # 2 an hour at every threshold it has
    assert thresholds_for(curves, 100.0) == {"six": 0.3, "nine": 0.3}


def test_listen_picks_thresholds_from_the_curve_the_model_saved():
    import dataclasses

    import pytest
    import torch

    from deepcat.cli.parser import build_parser
    from deepcat.errors import DeepcatError
    from deepcat.inference.listen import resolved
    from deepcat.inference.torch_model import Classifier
    from deepcat.inputs.audio import AudioPreprocess
    from deepcat.run_meta import Calibration

    curves = {"six": [[0.5, 3.0], [0.6, 1.0], [0.7, 0.0]], "nine": [[0.5, 0.5], [0.6, 0.0], [0.7, 0.0]]}
    saved = Calibration(false_alarms=curves, false_alarm_hours=2.0)
    assert Calibration.from_dict(json_round_trip(saved.to_dict())) == saved  # as model.json and exports hold it
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40 * 101, 3))
    classifier = Classifier(model, ["six", "nine", "_unknown_"], AudioPreprocess(), "run", calibration=saved)
    rate = Spotting(false_alarms_per_hour=1.0, thresholds={"nine": 0.9})
    assert resolved(rate, classifier).thresholds == {"six": 0.6, "nine": 0.9}  # a class's own still wins
    assert resolved(Spotting(false_alarms_per_hour=0.0), classifier).thresholds == {"six": 0.7, "nine": 0.6}
    assert resolved(Spotting(), classifier) == Spotting()
    classifier.calibration = dataclasses.replace(saved, false_alarms=None)
    with pytest.raises(DeepcatError, match="no false-alarm curve.*_unknown_ and _silence_.*--threshold"):
        resolved(rate, classifier)
    given = build_parser().parse_args(["listen", "run", "a.wav", "--false-alarms-per-hour", "0.5"])
    assert given.false_alarms_per_hour == 0.5


def json_round_trip(value):
    import json

    return json.loads(json.dumps(value))
