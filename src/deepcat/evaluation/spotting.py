"""Keyword spotting judged on a sound run's held-out clips, for its report: the clips' words (classes other than
`_silence_` and `_unknown_`) strung into one long recording with pauses, the non-word clips between them as
speech and sound that hold no keyword, under noise; `deepcat listen`'s detector with its default settings runs
over it, and each keyword counts as detected when its label is reported by a second after the word ends.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from deepcat.data.sources import Samples
from deepcat.inputs import BadInput

__all__ = ["MAX_NEGATIVE_CLIPS", "MAX_WORDS", "false_alarms_on_held_out", "spotting_on_held_out"]

MAX_WORDS = 300  # keywords in the recording: about 12 minutes, scored in about 10 s on 2 cores
MAX_NEGATIVE_CLIPS = 1_000  # non-word clips in the false-alarm stream: about 40 minutes, scored in about 10 s


def spotting_on_held_out(run_dir: Path, samples: Samples, classes: list[str], *, seed: int = 0) -> dict[str, Any]:
    """Detection rate, false activations per hour and latency of the run's model over a recording made from
    `samples` (see the module docstring); saved as run_dir/spotting.json."""
    from deepcat.data.spoken_digits import keyword_stream, trimmed
    from deepcat.inference.listen import NOT_KEYWORDS, Spotting, listen, scored
    from deepcat.inference.torch_model import load_run
    from deepcat.inputs import input_kind
    from deepcat.inputs.audio import SAMPLE_RATE

    kind = input_kind("audio")
    rng = np.random.default_rng(seed)
    keyword = np.array([classes[y] not in NOT_KEYWORDS for y in samples.labels])
    words_at = rng.permutation(np.flatnonzero(keyword))[:MAX_WORDS]
    others_at = rng.permutation(np.flatnonzero(~keyword))[: max(1, MAX_WORDS // 4)]
    words, others = [], []
    for i in (*words_at, *others_at):
        try:
            clip = trimmed(np.asarray(samples.decode(int(i), kind), np.float32))
        except BadInput:
            continue
        if keyword[i]:
            words.append((classes[samples.labels[i]], clip))
        else:
            others.append(clip)
    recording, truth = keyword_stream(words, others, seed=seed)
    spotting = Spotting()
    found = listen(load_run(run_dir), recording, spotting)
    result = scored(found, truth, len(recording) / SAMPLE_RATE)
    summary = {
        "settings": dataclasses.asdict(spotting),
        "keywords_spoken": result.words,
        "other_clips": len(others),
        "recording_minutes": len(recording) / SAMPLE_RATE / 60,
        "detection_rate": result.detection_rate,
        "false_activations": result.false_activations,
        "false_activations_per_hour": result.false_per_hour,
        "median_latency_s": result.median_latency_s,
    }
    (run_dir / "spotting.json").write_text(json.dumps(summary, indent=2))
    print(
        f"keyword spotting over {summary['recording_minutes']:.0f} min of held-out clips: "
        f"{result.detection_rate:.1%} of {result.words} keywords heard, {result.false_per_hour:.0f} false "
        "activations per hour",
        file=sys.stderr,
    )
    return summary


def false_alarms_on_held_out(run_dir: Path, samples: Samples, classes: list[str], *, seed: int = 0) -> float | None:
    """Each keyword's false-alarm curve (`deepcat.inference.false_alarms`) over a stream of `samples`' non-word
    clips (`_silence_`, `_unknown_`: no keyword spoken), with pauses, under noise, saved in the run's calibration
    (model.json; an export carries it) for `deepcat listen --false-alarms-per-hour`. Returns the stream's hours,
    or None where `samples` hold no non-word clip (nothing is saved)."""
    from deepcat.data.spoken_digits import keyword_stream, trimmed
    from deepcat.inference.false_alarms import DEFAULT_PER_HOUR, false_alarm_curve, thresholds_for
    from deepcat.inference.listen import NOT_KEYWORDS, Spotting, window_probabilities
    from deepcat.inference.torch_model import load_run
    from deepcat.inputs import input_kind
    from deepcat.inputs.audio import SAMPLE_RATE
    from deepcat.run_folder import read_model_json, update_model_json

    kind = input_kind("audio")
    negative = np.flatnonzero([classes[y] in NOT_KEYWORDS for y in samples.labels])
    others = []
    for i in np.random.default_rng(seed).permutation(negative)[:MAX_NEGATIVE_CLIPS]:
        try:
            others.append(trimmed(np.asarray(samples.decode(int(i), kind), np.float32)))
        except BadInput:
            continue
    if not others:
        return None
    recording, _ = keyword_stream([], others, seed=seed)
    hours = len(recording) / SAMPLE_RATE / 3600
    spotting = Spotting()
    _, probabilities = window_probabilities(load_run(run_dir), recording, hop_ms=spotting.hop_ms)
    curves = false_alarm_curve(probabilities, classes, spotting, hours=hours)
    meta = read_model_json(run_dir)
    calibration = dataclasses.replace(meta.calibration_or_default, false_alarms=curves, false_alarm_hours=hours)
    update_model_json(run_dir, calibration=calibration)
    picked = thresholds_for(curves, DEFAULT_PER_HOUR)
    print(
        f"false alarms over {hours * 60:.1f} min of held-out non-word clips: thresholds for at most "
        f"{DEFAULT_PER_HOUR:g} an hour (deepcat listen --false-alarms-per-hour 1): {picked}",
        file=sys.stderr,
    )
    return hours
