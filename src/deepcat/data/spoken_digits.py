"""`spoken-digits`: the words zero to nine spoken by espeak-ng (Debian's `espeak-ng`) in every English accent it
has and many voice variants, speeds and pitches, with noise mixed in at several levels. Generated once,
deterministically, into the data cache as one folder per class under train/ and test/. Training hears
TRAIN_VARIANTS in the accents not in TEST_ACCENTS; the test split holds every other pairing, so each test voice
is a variant or an accent (or both) that training never hears.

Speech Commands' two non-word classes are generated beside the words: `_unknown_` (other words, OTHER_WORDS, in
the same voices) and `_silence_` (background alone: noise, hum or near silence). The built-in `spoken-digits`
leaves them out; `spoken-commands` trains with them (see `data/builtin.py`).
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

__all__ = [
    "ACCENTS",
    "NOT_WORDS",
    "OTHER_WORDS",
    "PITCHES",
    "RENDITIONS",
    "SNR_DB",
    "SPEEDS",
    "TEST_ACCENTS",
    "TEST_VARIANTS",
    "TRAIN_VARIANTS",
    "VERSION",
    "WORDS",
    "espeak",
    "generate",
    "render",
    "render_silence",
    "trimmed",
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
# Speech Commands' non-words: `_unknown_` holds words that are not keywords (its ten extra words, and a few
# that share sounds with digits), `_silence_` background alone; RENDITIONS clips of each per voice.
OTHER_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "seventy", "free", "nice", "ate")
NOT_WORDS = ("_silence_", "_unknown_")
VERSION = 2  # bump when what is generated changes


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


def render(path: Path, voice: str, word: str, rendition: int) -> None:
    """One clip of `word` (for `_unknown_`: one of OTHER_WORDS; for `_silence_`: background alone)."""
    import soundfile as sf

    from deepcat.inputs.audio import SAMPLE_RATE, fit_length, to_mono_16k

    rng = np.random.default_rng(zlib.crc32(f"{voice}/{word}/{rendition}".encode()))
    if word == "_silence_":
        sf.write(path, render_silence(rng), SAMPLE_RATE, subtype="PCM_16")
        return
    if word == "_unknown_":
        word = OTHER_WORDS[int(rng.integers(len(OTHER_WORDS)))]
    samples, rate = espeak(voice, word, speed=int(rng.integers(*SPEEDS)), pitch=int(rng.integers(*PITCHES)))
    clip = fit_length(trimmed(to_mono_16k(samples, rate)), SAMPLE_RATE)
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
    progress: bool = True,
) -> Path:
    """Write the data set under `root` (train/WORD/*.wav, test/WORD/*.wav, the same for `not_words`) once; later
    calls return at once. Tests pass fewer words, accents and voices for a small set made the same way."""
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
    jobs = []
    for accent in accents:
        for variant in (*train_variants, *test_variants):
            split = "train" if accent not in test_accents and variant in train_variants else "test"
            for word in (*words, *not_words):
                (root / split / word).mkdir(parents=True, exist_ok=True)
                for rendition in range(RENDITIONS):
                    path = root / split / word / f"{accent}+{variant}-{rendition}.wav"
                    jobs.append((path, f"{accent}+{variant}", word, rendition))
    with ThreadPoolExecutor(max_workers=4) as pool:  # espeak-ng runs as processes: threads only wait on them
        list(
            progress_bar(
                pool.map(lambda job: render(*job), jobs),
                total=len(jobs),
                enabled=progress,
                desc="generating spoken-digits (once)",
            )
        )
    done.write_text(f"{len(jobs)} clips\n")
    return root
