"""`spoken-digits`: the words zero to nine spoken by espeak-ng (Debian's `espeak-ng`) in every English accent it
has and many voice variants, speeds and pitches, with noise mixed in at several levels. Generated once,
deterministically, into the data cache as one folder per class under train/ and test/. Training hears
TRAIN_VARIANTS in the accents not in TEST_ACCENTS; the test split holds every other pairing, so each test voice
is a variant or an accent (or both) that training never hears.

Speech Commands' two non-word classes are generated beside the words: `_unknown_` (other speech in the same
voices: words and texts from `other_speech.py`, near words, and keywords more than half cut off at a window's
edge) and `_silence_` (background alone: noise, hum or near silence). The built-in `spoken-digits` leaves them
out; `spoken-commands` trains with them (see `data/builtin.py`).

A stream shows a word anywhere in the detector's window, cut at its edges, next to other words. So every
training keyword after its first rendition is a stream window (`stream_window`): the word at a random offset
that keeps at least KEEP_AS_KEYWORD of it, beside a neighbouring word for half of them. The test split keeps
its words centred, so its clip accuracy compares with earlier versions'; `benchmarks/sound.py` measures streams.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import numpy as np

from deepcat.data.other_speech import OtherSpeech, load_other_speech

__all__ = [
    "ACCENTS",
    "CUT_AS_OTHER",
    "KEEP_AS_KEYWORD",
    "NOT_WORDS",
    "OTHER_WORDS",
    "PITCHES",
    "RENDITIONS",
    "SNR_DB",
    "SPEEDS",
    "TEST_ACCENTS",
    "TEST_VARIANTS",
    "TRAIN_VARIANTS",
    "UNKNOWN_MIX",
    "UNKNOWN_RENDITIONS",
    "VERSION",
    "WORDS",
    "cut_window",
    "espeak",
    "generate",
    "kept_share",
    "placed",
    "render",
    "render_silence",
    "spoken",
    "stream_window",
    "trimmed",
    "unknown_clip",
    "window_label",
    "with_noise",
]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# espeak-ng's English accents, all of them (`espeak-ng --voices=en`; its en-* mbrola voices need mbrola)
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
TEST_ACCENTS = ("en-gb-scotland", "en-029")  # whole accents training never hears
TRAIN_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "f1",
    "f2",
    "f3",
    "f4",
    "croak",
    "klatt",
    "klatt2",
    "adam",
    "Alex",
    "Andrea",
    "Annie",
    "benjamin",
    "caleb",
    "david",
    "ed",
    "linda",
    "max",
    "paul",
)
TEST_VARIANTS = ("m7", "f5", "klatt3", "john", "steph", "robert")
RENDITIONS = 2  # per speaker and word, each with its own speed, pitch and noise
SPEEDS = (110, 260)  # words per minute (espeak-ng's default: 175)
PITCHES = (10, 90)  # espeak-ng's 0-99 pitch scale (default: 50)
SNR_DB = (None, 20.0, 10.0)  # clean, light and heavy noise
# Speech Commands' non-words: `_silence_` is background alone, RENDITIONS clips per voice; `_unknown_` is other
# speech, UNKNOWN_RENDITIONS clips per voice, drawn by UNKNOWN_MIX. OTHER_WORDS are Speech Commands' ten extra
# words and three near a digit; a homophone ("ate") is no `_unknown_`: see other_speech.HOMOPHONES.
OTHER_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "seventy", "free", "nice")
NOT_WORDS = ("_silence_", "_unknown_")
UNKNOWN_RENDITIONS = 8  # 1,920 clips of other speech over the 240 voices (about 4 times a keyword's)
UNKNOWN_MIX = {"word": 0.5, "text": 0.3, "near": 0.05, "cut keyword": 0.15}
# A window holding at least KEEP_AS_KEYWORD of a keyword is that keyword; one holding at most CUT_AS_OTHER of it
# is `_unknown_` (half a "seven" is no seven, and `listen` should stay quiet on it); between is not generated:
# a 60% word is neither, and either label would teach the model a guess. Training's own shift of up to 100 ms
# (audio_tensors.SHIFT_SECONDS) moves a word by a quarter of a typical 0.4 s digit: the gap absorbs most of that.
KEEP_AS_KEYWORD = 0.75
CUT_AS_OTHER = 0.5
NEIGHBOUR_PROBABILITY = 0.5  # stream windows with another word beside the keyword
GAP_SECONDS = (0.05, 0.3)  # ... this far from it
VERSION = 3  # bump when what is generated changes


def espeak(voice: str, word: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
        check=True,
        capture_output=True,
    ).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return samples, rate


def trimmed(samples: np.ndarray, floor: float = 0.02) -> np.ndarray:
    """Without the leading and trailing silence espeak-ng adds."""
    loud = np.flatnonzero(np.abs(samples) > floor * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


def with_noise(samples: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """White or brown noise at `snr_db` below the speech's power."""
    if snr_db is None:
        return samples
    noise = rng.normal(size=len(samples))
    if rng.random() < 0.5:
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")  # brown noise without its drift
    power = np.mean(samples**2) / 10 ** (snr_db / 10)
    return cast(
        "np.ndarray", (samples + noise / np.sqrt(np.mean(noise**2) + 1e-12) * np.sqrt(power)).astype(np.float32)
    )


def keyword_stream(
    words: list[tuple[str, np.ndarray]],
    others: list[np.ndarray],
    *,
    gaps_s: tuple[float, float] = (0.8, 2.0),
    snr_db: float = 20.0,
    seed: int = 0,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A long recording to spot keywords in: every one of `words` (label, 16 kHz samples of one spoken word) and
    of `others` (speech that holds no keyword) once, shuffled, each after a pause of `gaps_s` seconds, with noise
    `snr_db` below the speech over all of it. Returns the samples and each keyword's (label, start, end) in s."""
    from deepcat.inputs.audio import SAMPLE_RATE

    rng = np.random.default_rng(seed)
    pieces: list[tuple[str | None, np.ndarray]] = [*words, *((None, other) for other in others)]
    order = rng.permutation(len(pieces))
    parts, truth, at = [], [], 0
    for index in order:
        label, samples = pieces[index]
        pause = np.zeros(int(rng.uniform(*gaps_s) * SAMPLE_RATE), np.float32)
        parts += [pause, samples.astype(np.float32)]
        at += len(pause)
        if label is not None:
            truth.append((label, at / SAMPLE_RATE, (at + len(samples)) / SAMPLE_RATE))
        at += len(samples)
    parts.append(np.zeros(SAMPLE_RATE, np.float32))  # a last second for the last word's windows
    speech = np.concatenate(parts)
    loud = np.mean(np.concatenate([samples for _, samples in pieces]) ** 2)
    noise = rng.normal(size=len(speech)).astype(np.float32) * np.sqrt(loud / 10 ** (snr_db / 10))
    return np.clip(speech + noise, -1, 1).astype(np.float32), truth


def spoken(voice: str, text: str, rng: np.random.Generator) -> np.ndarray:
    """`text` in `voice` at a speed and pitch drawn from SPEEDS and PITCHES: 16 kHz samples, silence trimmed."""
    from deepcat.inputs.audio import to_mono_16k

    samples, rate = espeak(voice, text, speed=int(rng.integers(*SPEEDS)), pitch=int(rng.integers(*PITCHES)))
    return trimmed(to_mono_16k(samples, rate))


def placed(samples: np.ndarray, length: int, offset: int) -> np.ndarray:
    """A window of `length` samples holding `samples` from `offset` on (before 0 or past the end: cut off)."""
    window = np.zeros(length, np.float32)
    start, end = max(offset, 0), min(offset + len(samples), length)
    if end > start:
        window[start:end] = samples[start - offset : end - offset]
    return window


def kept_share(size: int, length: int, offset: int) -> float:
    """How much of a word `size` samples long a window of `length` holds when the word starts at `offset`."""
    return max(0, min(offset + size, length) - max(offset, 0)) / size


def window_label(word: str, share: float) -> str | None:
    """The class of a window holding `share` of the keyword `word`: the keyword, `_unknown_` when at most
    CUT_AS_OTHER of it is there, None (make no such window) between."""
    if share >= KEEP_AS_KEYWORD:
        return word
    return "_unknown_" if share <= CUT_AS_OTHER else None


def stream_window(
    samples: np.ndarray, length: int, rng: np.random.Generator, neighbour: np.ndarray | None = None
) -> np.ndarray:
    """`samples` (one word) where a stream's window may show it: at a random offset that keeps at least
    KEEP_AS_KEYWORD of it, with `neighbour` (another word) GAP_SECONDS before or after it, cut where it leaves."""
    from deepcat.inputs.audio import SAMPLE_RATE

    size = len(samples)
    lowest, highest = -int((1 - KEEP_AS_KEYWORD) * size), length - int(np.ceil(KEEP_AS_KEYWORD * size))
    offset = int(rng.integers(lowest, highest + 1)) if highest >= lowest else (length - size) // 2
    window = placed(samples, length, offset)
    if neighbour is not None:
        gap = int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)
        at = offset - gap - len(neighbour) if rng.random() < 0.5 else offset + size + gap
        window += placed(neighbour, length, at)
    return window


def cut_window(samples: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`samples` (a keyword) mostly outside a window: 15% to CUT_AS_OTHER of it at the window's start or end."""
    kept = max(1, int(rng.uniform(0.15, CUT_AS_OTHER) * len(samples)))
    return placed(samples, length, kept - len(samples) if rng.random() < 0.5 else length - kept)


def unknown_clip(voice: str, rng: np.random.Generator, other: OtherSpeech, keywords: tuple[str, ...]) -> np.ndarray:
    """One second of other speech in `voice`, of a kind drawn by UNKNOWN_MIX: a word from the word list, a
    second of a fortune (cut wherever the second falls), a near word (OTHER_WORDS), or a keyword cut in half."""
    from deepcat.inputs.audio import SAMPLE_RATE

    kind = str(rng.choice(list(UNKNOWN_MIX), p=list(UNKNOWN_MIX.values())))
    if kind == "text":
        samples = spoken(voice, other.texts[int(rng.integers(len(other.texts)))], rng)
        if len(samples) <= SAMPLE_RATE:
            return stream_window(samples, SAMPLE_RATE, rng)
        start = int(rng.integers(len(samples) - SAMPLE_RATE + 1))
        return samples[start : start + SAMPLE_RATE].astype(np.float32)
    if kind == "cut keyword":
        return cut_window(spoken(voice, keywords[int(rng.integers(len(keywords)))], rng), SAMPLE_RATE, rng)
    pool = OTHER_WORDS if kind == "near" else other.words
    return stream_window(spoken(voice, pool[int(rng.integers(len(pool)))], rng), SAMPLE_RATE, rng)


def render(
    path: Path,
    voice: str,
    word: str,
    rendition: int,
    *,
    other: OtherSpeech,
    stream: bool = False,
    keywords: tuple[str, ...] = WORDS,
) -> None:
    """One clip of `word` (a keyword, centred, or with `stream` as `stream_window` puts it; `_unknown_`: other
    speech, see `unknown_clip`; `_silence_`: background alone), its draws seeded by voice, word and rendition."""
    import soundfile as sf

    from deepcat.inputs.audio import SAMPLE_RATE, fit_length

    rng = np.random.default_rng(zlib.crc32(f"{voice}/{word}/{rendition}".encode()))
    if word == "_silence_":
        sf.write(path, render_silence(rng), SAMPLE_RATE, subtype="PCM_16")
        return
    if word == "_unknown_":
        clip = unknown_clip(voice, rng, other, keywords)
    elif stream:
        samples = spoken(voice, word, rng)
        neighbour = None
        if rng.random() < NEIGHBOUR_PROBABILITY:
            neighbour = spoken(voice, other.words[int(rng.integers(len(other.words)))], rng)
        clip = stream_window(samples, SAMPLE_RATE, rng, neighbour)
    else:
        clip = fit_length(spoken(voice, word, rng), SAMPLE_RATE)
    clip = with_noise(clip, SNR_DB[int(rng.integers(len(SNR_DB)))], rng)
    sf.write(path, np.clip(clip, -1, 1), SAMPLE_RATE, subtype="PCM_16")


def render_silence(rng: np.random.Generator) -> np.ndarray:
    """One second of background without speech: white, brown or mains-hum noise at a random level, or near
    silence (a quiet recording's hiss)."""
    from deepcat.inputs.audio import SAMPLE_RATE

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    kind = int(rng.integers(4))
    if kind == 0:
        noise = rng.normal(size=SAMPLE_RATE)
    elif kind == 1:
        noise = np.cumsum(rng.normal(size=SAMPLE_RATE))
        noise -= np.convolve(noise, np.ones(64) / 64, mode="same")
    elif kind == 2:
        noise = np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t) + 0.3 * rng.normal(size=SAMPLE_RATE)
    else:
        noise = rng.normal(size=SAMPLE_RATE) * 0.01
    level = 10 ** rng.uniform(-3.5, -1.0)  # about -70 to -20 dB of full scale
    return cast("np.ndarray", np.clip(noise / (np.abs(noise).max() + 1e-12) * level, -1, 1).astype(np.float32))


def generate(
    root: Path,
    *,
    words: tuple[str, ...] = WORDS,
    accents: tuple[str, ...] = ACCENTS,
    test_accents: tuple[str, ...] = TEST_ACCENTS,
    train_variants: tuple[str, ...] = TRAIN_VARIANTS,
    test_variants: tuple[str, ...] = TEST_VARIANTS,
    not_words: tuple[str, ...] = NOT_WORDS,
    unknown_renditions: int = UNKNOWN_RENDITIONS,
    progress: bool = True,
) -> Path:
    """Write the data set under `root` (train/WORD/*.wav, test/WORD/*.wav, the same for `not_words`) once; later
    calls return at once. Tests pass fewer words, accents and voices for a small set made the same way; more
    `unknown_renditions` make more other speech (the default set: about 75 s on 2 cores)."""
    from deepcat.errors import DeepcatError
    from deepcat.progress import progress_bar

    done = root / f".complete-v{VERSION}"
    if done.is_file():
        return root
    if shutil.which("espeak-ng") is None:
        raise DeepcatError(
            "spoken-digits is generated with espeak-ng: install it (Debian/Ubuntu: "
            "apt-get install espeak-ng) or use a folder of your own clips"
        )
    for split in ("train", "test"):  # an earlier version's clips must not stay beside this one's
        shutil.rmtree(root / split, ignore_errors=True)
    for stale in root.glob(".complete-v*"):
        stale.unlink()
    other = {split: load_other_speech(test=split == "test") for split in ("train", "test")}
    jobs = []
    for accent in accents:
        for variant in (*train_variants, *test_variants):
            split = "train" if accent not in test_accents and variant in train_variants else "test"
            for word in (*words, *not_words):
                (root / split / word).mkdir(parents=True, exist_ok=True)
                for rendition in range(unknown_renditions if word == "_unknown_" else RENDITIONS):
                    path = root / split / word / f"{accent}+{variant}-{rendition}.wav"
                    stream = split == "train" and word in words and rendition > 0  # the first stays centred
                    jobs.append((path, f"{accent}+{variant}", word, rendition, other[split], stream))

    def run(job: tuple[Path, str, str, int, OtherSpeech, bool]) -> None:
        path, voice, word, rendition, speech, stream = job
        render(path, voice, word, rendition, other=speech, stream=stream, keywords=words)

    with ThreadPoolExecutor(max_workers=4) as pool:  # espeak-ng runs as processes: threads only wait on them
        list(
            progress_bar(
                pool.map(run, jobs),
                total=len(jobs),
                enabled=progress,
                desc="generating spoken-digits (once)",
            )
        )
    done.write_text(f"{len(jobs)} clips\n")
    return root
