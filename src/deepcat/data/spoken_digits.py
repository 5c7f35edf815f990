"""`spoken-digits`: the words zero to nine spoken by espeak-ng (Debian's `espeak-ng`) in many accents and voice
variants, speeds and pitches, with noise mixed in at several levels. Generated once, deterministically, into
the data cache as one folder per class under train/ and test/. The test split's voice variants never speak in
training, so its accuracy measures speakers the model has not heard.
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
    "RENDITIONS",
    "SNR_DB",
    "TEST_VARIANTS",
    "TRAIN_VARIANTS",
    "VERSION",
    "WORDS",
    "espeak",
    "generate",
    "render",
    "trimmed",
    "with_noise",
]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
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
SNR_DB = (None, 20.0, 10.0)  # clean, light and heavy noise
VERSION = 1  # bump when what is generated changes


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
    import soundfile as sf

    from deepcat.inputs.audio import SAMPLE_RATE, fit_length, to_mono_16k

    rng = np.random.default_rng(zlib.crc32(f"{voice}/{word}/{rendition}".encode()))
    samples, rate = espeak(voice, word, speed=int(rng.integers(130, 211)), pitch=int(rng.integers(25, 76)))
    clip = fit_length(trimmed(to_mono_16k(samples, rate)), SAMPLE_RATE)
    clip = with_noise(clip, SNR_DB[int(rng.integers(len(SNR_DB)))], rng)
    sf.write(path, np.clip(clip, -1, 1), SAMPLE_RATE, subtype="PCM_16")


def generate(
    root: Path,
    *,
    words: tuple[str, ...] = WORDS,
    accents: tuple[str, ...] = ACCENTS,
    train_variants: tuple[str, ...] = TRAIN_VARIANTS,
    test_variants: tuple[str, ...] = TEST_VARIANTS,
    progress: bool = True,
) -> Path:
    """Write the data set under `root` (train/WORD/*.wav, test/WORD/*.wav) once; later calls return at once.
    Tests pass fewer words, accents and voices for a small set made the same way."""
    from tqdm import tqdm

    from deepcat.errors import DeepcatError

    done = root / f".complete-v{VERSION}"
    if done.is_file():
        return root
    if shutil.which("espeak-ng") is None:
        raise DeepcatError(
            "spoken-digits is generated with espeak-ng: install it (Debian/Ubuntu: "
            "apt-get install espeak-ng) or use a folder of your own clips"
        )
    jobs = []
    for split, variants in (("train", train_variants), ("test", test_variants)):
        for word in words:
            (root / split / word).mkdir(parents=True, exist_ok=True)
            for accent in accents:
                for variant in variants:
                    for rendition in range(RENDITIONS):
                        path = root / split / word / f"{accent}+{variant}-{rendition}.wav"
                        jobs.append((path, f"{accent}+{variant}", word, rendition))
    with ThreadPoolExecutor(max_workers=4) as pool:  # espeak-ng runs as processes: threads only wait on them
        list(
            tqdm(
                pool.map(lambda job: render(*job), jobs),
                total=len(jobs),
                disable=not progress,
                desc="generating spoken-digits (once)",
            )
        )
    done.write_text(f"{len(jobs)} clips\n")
    return root
