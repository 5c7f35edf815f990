"""What `spoken-commands`' `_unknown_` class is made of: other English, as a stream puts it between keywords.
Single words from Debian's `wamerican` word list and short texts from `fortune`'s (Debian's `fortune-mod`),
none of them a digit word or a word that sounds like one (HOMOPHONES, SOUNDS_LIKE_A_DIGIT), split by a hash of
the text so the test split's words and texts are never heard in training, as its voices are not.

Homophones are left out rather than labelled `_unknown_`: "for" and "four" are the same sound, and a keyword
spotter that hears one second without context cannot tell them apart; teaching it that the sound is both would
only blur the digit. `benchmarks/sound.py --homophones RUN` measures how often each is answered as its digit.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FORTUNES",
    "HOMOPHONES",
    "SOUNDS_LIKE_A_DIGIT",
    "TEST_SHARE",
    "WORD_LIST",
    "OtherSpeech",
    "is_test_text",
    "load_other_speech",
    "speakable",
]

WORD_LIST = Path("/usr/share/dict/american-english")  # Debian's wamerican
FORTUNES = Path("/usr/share/games/fortunes")  # Debian's fortune-mod (its fortunes-min data)
# digit -> the words that sound the same in some built-in voice (`espeak-ng -x` gives their phonemes); said
# apart, only context tells them from the digit. Not here: "free" (London's th-fronted "three", but no espeak-ng
# voice fronts th, so it is a near word to learn: OTHER_WORDS) and "nein" (espeak-ng's English says "neen").
HOMOPHONES = {
    "zero": ("oh", "o", "owe"),  # "oh" is how most people read a 0 aloud
    "one": ("won",),
    "two": ("to", "too"),
    "three": ("tree",),  # espeak-ng's Caribbean voice (en-029) says "three" as "tree"
    "four": ("for", "fore"),
    "six": ("sics", "sicks"),
    "eight": ("ate", "ait"),
}
SOUNDS_LIKE_A_DIGIT = frozenset(
    {w for digit, same in HOMOPHONES.items() for w in (digit, *same)}
    | {
        f"{digit}{end}"
        for digit in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
        for end in ("", "s", "es")
    }
)
TEST_SHARE = 5  # one text in TEST_SHARE (by hash) is held out for the test split
TEXT_WORDS = (3, 14)  # a fortune of this many words: one to four seconds of speech


@dataclass(frozen=True)
class OtherSpeech:
    """One split's other speech: single words and short texts, none of them heard by the other split."""

    words: tuple[str, ...]
    texts: tuple[str, ...]


def is_test_text(text: str) -> bool:
    """Whether `text` belongs to the test split (a stable hash, so every machine splits alike)."""
    return zlib.crc32(text.encode()) % TEST_SHARE == 0


def speakable(text: str) -> bool:
    """Whether `text` holds no digit, numeral or homophone of one: espeak-ng reads "4" and "1999" as digits."""
    if re.search(r"\d", text):
        return False
    return not any(token in SOUNDS_LIKE_A_DIGIT for token in re.findall(r"[a-z]+", text.lower()))


def load_other_speech(*, test: bool) -> OtherSpeech:
    """The word list's plain lowercase words (3-12 letters) and fortune's short one-line-ish texts that are
    speakable, for the test split or the training one.

    Raises:
        DeepcatError: when the word list or the fortunes are not installed, naming the Debian package.
    """
    from deepcat.errors import DeepcatError

    if not WORD_LIST.is_file():
        raise DeepcatError(
            f"the spoken-digits and spoken-commands sets' other speech reads the word list {WORD_LIST}: install it "
            "(Debian/Ubuntu: apt-get install wamerican)"
        )
    sources = sorted(p for p in FORTUNES.glob("*") if p.is_file() and p.suffix == "") if FORTUNES.is_dir() else []
    if not sources:
        raise DeepcatError(
            f"the spoken-digits and spoken-commands sets' other speech reads fortune's texts under {FORTUNES}: "
            "install them (Debian/Ubuntu: apt-get install fortune-mod)"
        )
    words = sorted(
        {w for w in WORD_LIST.read_text(errors="ignore").split() if re.fullmatch(r"[a-z]{3,12}", w) and speakable(w)}
    )
    texts = set()
    for source in sources:
        for entry in source.read_text(errors="ignore").split("\n%\n"):
            # the words said, without an attribution ("-- Mark Twain") or leading dashes espeak-ng reads as flags
            text = " ".join(entry.split()).split(" -- ")[0].lstrip("-\"'. ")
            if TEXT_WORDS[0] <= len(text.split()) <= TEXT_WORDS[1] and speakable(text):
                texts.add(text)
    return OtherSpeech(
        words=tuple(w for w in words if is_test_text(w) == test),
        texts=tuple(t for t in sorted(texts) if is_test_text(t) == test),
    )
