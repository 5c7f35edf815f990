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

__all__ = ["MAX_WORDS", "spotting_on_held_out"]

MAX_WORDS = 300  # keywords in the recording: about 12 minutes, scored in about 10 s on 2 cores


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
