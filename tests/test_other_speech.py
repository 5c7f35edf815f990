"""spoken-commands' other speech and the stream windows training hears: labels by how much of a word a window
holds, an `_unknown_` class without digits or their homophones, held-out texts, and a generation that repeats."""

import re
import shutil

import numpy as np
import pytest

from deepcat.data import other_speech, spoken_digits
from deepcat.data.spoken_digits import CUT_AS_OTHER, KEEP_AS_KEYWORD, kept_share, window_label

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng (.ci/run installs it)"
)
LENGTH = 16000
WORD = np.ones(6000, np.float32)  # a 0.375 s "word": every sample of it is loud, so what a window holds is countable


def test_an_off_centre_word_is_still_its_keyword_and_a_half_cut_word_is_not():
    assert window_label("seven", kept_share(6000, LENGTH, 0)) == "seven"  # at the window's very start
    assert window_label("seven", kept_share(6000, LENGTH, LENGTH - 6000)) == "seven"  # at its very end
    assert window_label("seven", kept_share(6000, LENGTH, -1000)) == "seven"  # a sixth cut off
    assert window_label("seven", kept_share(6000, LENGTH, -3000)) == "_unknown_"  # half cut off
    assert window_label("seven", kept_share(6000, LENGTH, LENGTH - 2000)) == "_unknown_"  # two thirds gone
    assert window_label("seven", kept_share(6000, LENGTH, -2000)) is None  # two thirds there: neither


def test_stream_windows_move_the_word_about_and_keep_enough_of_it():
    rng = np.random.default_rng(0)
    starts, shares = [], []
    for _ in range(200):
        window = spoken_digits.stream_window(WORD, LENGTH, rng)
        held = np.flatnonzero(window)
        starts.append(held[0])
        shares.append(len(held) / len(WORD))
    assert min(shares) >= KEEP_AS_KEYWORD
    assert sum(s < 1 for s in shares) > 10  # some are cut at an edge ...
    assert np.ptp(starts) > 0.8 * (LENGTH - len(WORD))  # ... and the word is found all along the window
    cut = [np.count_nonzero(spoken_digits.cut_window(WORD, LENGTH, rng)) / len(WORD) for _ in range(100)]
    assert max(cut) <= CUT_AS_OTHER and min(cut) > 0


def test_a_neighbouring_word_sits_beside_the_keyword_not_on_it():
    rng = np.random.default_rng(1)
    for _ in range(50):
        window = spoken_digits.stream_window(WORD, LENGTH, rng, neighbour=2 * WORD)
        assert window.max() <= 2  # never summed over the keyword
        assert np.count_nonzero(window == 1) >= KEEP_AS_KEYWORD * len(WORD)


@pytest.mark.parametrize("test", [False, True])
def test_other_speech_holds_no_digit_word_or_homophone(test):
    speech = other_speech.load_other_speech(test=test)
    assert len(speech.words) > 5000 and len(speech.texts) > 40
    said = {w for text in (*speech.words, *speech.texts) for w in re.findall(r"[a-z]+", text.lower())}
    assert not said & other_speech.SOUNDS_LIKE_A_DIGIT
    assert {"for", "to", "won", "ate", "oh", "eight", "fours"} <= other_speech.SOUNDS_LIKE_A_DIGIT
    assert not set(spoken_digits.OTHER_WORDS) & other_speech.SOUNDS_LIKE_A_DIGIT
    assert not any(re.search(r"\d", text) for text in speech.texts)  # espeak-ng would read a numeral aloud


def test_the_test_split_hears_words_and_texts_training_never_does():
    train, test = other_speech.load_other_speech(test=False), other_speech.load_other_speech(test=True)
    assert not set(train.words) & set(test.words) and not set(train.texts) & set(test.texts)


def test_a_missing_word_list_names_the_package_to_install(monkeypatch, tmp_path):
    import deepcat

    monkeypatch.setattr(other_speech, "WORD_LIST", tmp_path / "nothing")
    with pytest.raises(deepcat.DeepcatError, match="apt-get install wamerican"):
        other_speech.load_other_speech(test=False)
    monkeypatch.setattr(other_speech, "WORD_LIST", tmp_path / "words")
    (tmp_path / "words").write_text("apple\n")
    monkeypatch.setattr(other_speech, "FORTUNES", tmp_path / "nowhere")
    with pytest.raises(deepcat.DeepcatError, match="apt-get install fortune-mod"):
        other_speech.load_other_speech(test=False)


@needs_espeak
def test_generation_repeats_itself_clip_for_clip(tmp_path):
    def made(folder):
        root = spoken_digits.generate(
            tmp_path / folder,
            words=("seven",),
            accents=("en-us",),
            train_variants=("m1",),
            test_variants=("f5",),
            test_accents=(),
            unknown_renditions=6,
            progress=False,
        )
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.wav"))}

    first, second = made("a"), made("b")
    assert first == second
    assert len([p for p in first if p.parts[:2] == ("train", "_unknown_")]) == 6
    assert (
        first[next(p for p in first if p.parts[:2] == ("train", "seven"))]
        != first[next(p for p in first if p.parts[:2] == ("test", "seven"))]
    )
