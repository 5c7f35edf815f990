"""Who is speaking (`teach.voices`): the speaker encoder's front end, and the labelling page with `--model speaker`
on espeak-ng voices the encoder never heard: a few clips labelled per voice, and the page pre-labels the rest."""

from __future__ import annotations

import importlib.util
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from deepcat.errors import DeepcatError
from deepcat.inputs.audio import SAMPLE_RATE
from deepcat.teach import voices

has_encoder = importlib.util.find_spec("resemblyzer") is not None
needs_encoder = pytest.mark.skipif(
    not has_encoder, reason="needs Resemblyzer's weights: pip install --no-deps resemblyzer==0.1.4 (.ci/run does)"
)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng")
VOICES = {"ann": "en-us+f2", "bob": "en-us+m1", "cat": "en-029+f4", "dan": "en-gb-scotland+m3"}
WORDS = ("apple", "river", "garden", "window", "yellow", "table", "morning", "silver")


def test_the_front_end_computes_what_librosa_computes():
    """The encoder was trained on librosa's power mel spectrogram: figures librosa 0.11 gives for the same settings
    (its filters' peaks, and a 1 kHz tone's frame away from the edges, where the padding differs), held here so
    that CI checks them without librosa."""
    filters = voices._mel_filters()[[0, 10, 20, 30, 39]]
    assert filters.argmax(1).tolist() == [2, 20, 44, 94, 185]
    assert filters.max(1) == pytest.approx([0.01240452, 0.01187949, 0.00719192, 0.00335015, 0.00172494], rel=1e-5)
    seconds = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    frames = voices.mel_frames(np.sin(2 * np.pi * 1000 * seconds).astype(np.float32))
    assert frames.shape == (101, voices.MELS)
    assert int(frames[50].argmax()) == 13 and float(frames[50].max()) == pytest.approx(104.51997, rel=1e-4)


def test_partial_utterances_cover_a_clip_as_resemblyzer_cuts_it():
    assert voices.partial_slices(SAMPLE_RATE) == [slice(0, 160)]  # 1 s: one partial of 1.6 s, padded
    assert voices.partial_slices(40_000) == [slice(0, 160), slice(77, 237)]  # the third covers under 75%: dropped


def test_without_the_weights_the_page_says_how_to_get_them(monkeypatch, tmp_path):
    from deepcat.inputs import input_kind
    from deepcat.teach.session import make_suggester

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DeepcatError, match="pip install --no-deps resemblyzer"):
        make_suggester([], input_kind("audio"), tmp_path, model="speaker")
    with pytest.raises(DeepcatError, match="tells voices apart"):
        make_suggester([], input_kind("image"), tmp_path, model="speaker")


@pytest.fixture
def four_voices(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """32 clips, flat: eight words in each of four espeak-ng voices, and who speaks in each (the file names say
    it too, but the page reads only the sound)."""
    from deepcat.data.spoken_digits import espeak, trimmed
    from deepcat.inputs.audio import read_clip

    root, truth = tmp_path / "voices", {}
    root.mkdir()
    for w, word in enumerate(WORDS):
        for name, voice in VOICES.items():
            samples, rate = espeak(voice, word, 175, 50)
            path = root / f"{w}-{name}.wav"
            sf.write(path, trimmed(samples), rate)
            truth[path.name] = name
    assert read_clip(next(iter(root.iterdir()))).ndim == 1
    return root, truth


@needs_encoder
@needs_espeak
def test_a_few_clips_a_voice_and_the_page_pre_labels_who_speaks(four_voices):
    from deepcat.serving.label_app import create_label_app
    from deepcat.teach.session import make_suggester, open_session

    root, truth = four_voices
    session = open_session(root, classes=list(VOICES), suggester=partial(make_suggester, model="speaker"))
    with TestClient(create_label_app(session), base_url="http://127.0.0.1") as c:
        deadline = time.time() + 120
        while not c.get("/v1/progress").json()["finished"]:
            assert time.time() < deadline, "voice features for 32 clips"
            time.sleep(0.2)
        labelled: list[str] = []
        for name in VOICES:
            labelled += [p for p in sorted(truth) if truth[p] == name][:3]
        for path in labelled:
            assert c.post("/v1/label", json={"path": path, "label": truth[path]}).status_code == 200
        deadline = time.time() + 60
        while not (items := c.get("/v1/next", params={"count": 20}).json()["items"])[0]["prelabel"]:
            assert time.time() < deadline, "no pre-labels once 12 clips are labelled"
            time.sleep(0.2)
    assert len(items) == 20 and not {i["path"] for i in items} & set(labelled)
    right = sum(i["prelabel"] == truth[i["path"]] for i in items)
    assert right >= 15, f"{right} of 20 pre-labels name the speaker after 3 clips a voice (chance: 5)"
