"""Sound: `deepcat train spoken-digits` against classical baselines, on the test split's voices that training
never hears, clean and degraded, in one run.

deepcat: the default recipe (DS-CNN on the 40-band log-mel spectrogram inside the model, `--epochs auto`), trained
on the training voices (19 of the 24 variants in 6 of the 8 accents; 5 variants are held out for validation),
timed from the call to `deepcat.train` to the end of training (`metrics.csv`'s epoch seconds) and to the
finished run (calibration, evaluation, report). Then ONNX fp32 against PyTorch on every test clip, and the int8
export's own check, which runs on the validation voices (unheard in training, as the test's are).

Robustness: every method is also tested on the test clips degraded as no training clip is (`degraded`): played
through an 8 kHz recording (resampled down and up by soxr) in a room (one of DEGRADED_ROOMS, synthetic impulse
responses with their own seed). deepcat is trained with its default augmentation for sound (`strong`: every
piece of `inputs/audio_augment.py`), with `light` (shifts, noise, SpecAugment), and with each piece alone on top
of `light`, so each piece is measured.
The issue's target: at most AIM_POINTS_LOST (3) points lost from the clean test to the degraded one.

PocketSphinx (CMU, `pip install pocketsphinx`; its US English acoustic model ships in the wheel, trained on
human speech, never on espeak-ng) decodes each clip with a JSGF grammar of the ten digits: a peer that never saw
the synthesiser.

Keyword spotting (`deepcat listen`, default settings) over one long recording: every test clip's word (unheard
voices), each after a pause of 0.8-2 s, between OTHER_WORDS spoken by the test voices (speech that holds no
digit), under noise 20 dB below the speech: the share of digits reported with their label by 1 s after the word
ends, false activations per hour, and the latency from the end of the word to its report. Then the same with
a model trained on `spoken-commands` (the digits plus Speech Commands' `_silence_` and `_unknown_` classes, whose
other words are not OTHER_WORDS), which has classes for speech that is no digit.

Baseline: MFCC features (13 coefficients and their deltas from a 40-band log-mel spectrogram, 25 ms windows,
10 ms hop; mean and standard deviation over time, plus the coefficients of 10 equal time slices), standardised,
then scikit-learn's logistic regression and an RBF SVM, fitted on the same training clips as deepcat (the
validation voices are held out from both). Each one's regularisation (C) is chosen by 5-fold cross-validation on
the training clips, grouped by voice variant so that a fold's voices are unheard as the test's are, then refitted
on them all. Feature extraction and the search are timed with the fit.

Homophones (`--homophones RUN`, printed, nothing saved): each word of `other_speech.HOMOPHONES` ("for", "to",
"won", "ate", ...) spoken by the test voices, centred in a clip as the digits are, and the share the run's model
answers with the digit it sounds like. A keyword spotter that hears a second without context cannot tell them
apart, so `_unknown_` holds none of them: this measures what a user should expect, it is no target.

Seeds (`--seeds N`, results/sound_seeds.json): one run trains each model once; the default recipe, `light`
and the MFCC baselines with N seeds each give the spread of the points lost, and how many seeds meet the aim.

    python benchmarks/sound.py            # ~50 min on 2 cores (the first run also generates the data, ~1 min)
    python benchmarks/sound.py --seeds 3  # ~30 min
    python benchmarks/sound.py --homophones runs/spoken-commands  # ~1 min
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402
from degrade import at_8khz, in_room, loud_as, room_response  # noqa: E402


def mfcc_features(
    clip: np.ndarray, *, rate: int = 16_000, n_mels: int = 40, n_mfcc: int = 13, slices: int = 10
) -> np.ndarray:
    """A fixed-length summary of one clip's MFCCs (numpy and scipy only)."""
    from scipy.fft import dct

    from deepcat.inputs.audio_tensors import mel_filterbank

    window, hop, n_fft = 400, 160, 512
    padded = np.pad(clip, (window // 2, window // 2))
    frames = np.lib.stride_tricks.sliding_window_view(padded, window)[::hop] * np.hanning(window)
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2  # (frames, bins)
    mel = np.log(np.maximum(power @ mel_filterbank(n_mels, n_fft, rate).T, 1e-6))
    mfcc = dct(mel, type=2, axis=1, norm="ortho")[:, :n_mfcc]  # (frames, 13)
    delta = np.gradient(mfcc, axis=0)
    both = np.concatenate([mfcc, delta], axis=1)
    sliced = np.stack([part.mean(0) for part in np.array_split(mfcc, slices)]).ravel()
    return np.concatenate([both.mean(0), both.std(0), sliced]).astype(np.float32)


def load_clips(samples) -> tuple[np.ndarray, np.ndarray]:
    from deepcat.inputs.audio import fit_length, read_clip

    return np.stack([fit_length(read_clip(p), 16_000) for p in samples.items]), samples.labels


def voice(path: Path) -> str:
    """A spoken-digits clip's voice variant (`ACCENT+VARIANT-RENDITION.wav`): what the test split never hears."""
    return path.stem.split("+", 1)[1].rsplit("-", 1)[0]


C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
DEGRADED_ROOMS = (0.3, 0.45, 0.6)  # reverberation times of the test's rooms, seconds
DEGRADED = "test accuracy (degraded: 8 kHz, room)"
AIM_POINTS_LOST = 3  # the target, clean to degraded


def points_lost(row: dict) -> float:
    return 100 * (row["test accuracy (unheard voices)"] - row[DEGRADED])


def degraded(clips: np.ndarray, seed: int = 1234) -> np.ndarray:
    """Each clip as an 8 kHz recording in a room: resampled to 8 kHz and back, then heard through one of
    DEGRADED_ROOMS' impulse responses (decaying noise after the direct sound), its energy kept."""
    rng = np.random.default_rng(seed)
    rooms = [room_response(rt60, rng) for rt60 in DEGRADED_ROOMS]
    out = [loud_as(in_room(at_8khz(clip), rooms[i % len(rooms)]), clip) for i, clip in enumerate(clips)]
    return np.stack(out).astype(clips.dtype)


def pocketsphinx_row(test: np.ndarray, y_test: np.ndarray, words: list[str], hard: np.ndarray) -> dict:
    """PocketSphinx with a grammar of the words, on the clean and the degraded test clips."""
    from pocketsphinx import Decoder

    with tempfile.NamedTemporaryFile("w", suffix=".gram", delete=False) as grammar:
        grammar.write(f"#JSGF V1.0;\ngrammar words;\npublic <word> = {' | '.join(words)};\n")
    decoder = Decoder(jsgf=grammar.name, samprate=16_000, loglevel="FATAL")

    def accuracy(clips: np.ndarray) -> float:
        right = 0
        for clip, label in zip(clips, y_test):
            decoder.start_utt()
            decoder.process_raw((np.clip(clip, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
            decoder.end_utt()
            right += (decoder.hyp().hypstr.strip() if decoder.hyp() else "") == words[label]
        return right / len(clips)

    clean = accuracy(test)
    return {
        "method": "PocketSphinx, a grammar of the ten words (CMU, trained on human speech)",
        "train clips": 0,
        "test clips": len(y_test),
        "test accuracy (unheard voices)": clean,
        DEGRADED: accuracy(hard),
        "training s": 0.0,
        "finished run s": 0.0,
    }


def baselines(splits, hard: np.ndarray) -> list[dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    (train, y_train), (test, y_test) = load_clips(splits.train), load_clips(splits.test)
    voices = [voice(Path(p)) for p in splits.train.items]
    rows = []
    for name, model in (
        ("MFCC + logistic regression", LogisticRegression(max_iter=3000)),
        ("MFCC + RBF SVM", SVC(gamma="scale")),
    ):
        started = time.perf_counter()
        x_train = np.stack([mfcc_features(c) for c in train])
        pipeline = make_pipeline(StandardScaler(), model)
        step = pipeline.steps[-1][0]
        search = GridSearchCV(pipeline, {f"{step}__C": list(C_GRID)}, cv=GroupKFold(n_splits=5), n_jobs=1)
        search.fit(x_train, y_train, groups=voices)
        seconds = time.perf_counter() - started
        accuracy = float((search.predict(np.stack([mfcc_features(c) for c in test])) == y_test).mean())
        accuracy_hard = float((search.predict(np.stack([mfcc_features(c) for c in hard])) == y_test).mean())
        rows.append(
            {
                "method": f"{name} (C={search.best_params_[f'{step}__C']:g} by grouped 5-fold CV)",
                "train clips": len(y_train),
                "test clips": len(y_test),
                "test accuracy (unheard voices)": accuracy,
                DEGRADED: accuracy_hard,
                "cross-validated accuracy": float(search.best_score_),
                "training s": seconds,
                "finished run s": seconds,
            }
        )
    return rows


# speech that is no digit, some of it close to one ("eleven", "seventeen", "nineteen", "tree")
OTHER_WORDS = ("hello", "water", "table", "yesterday", "eleven", "twenty", "seventeen", "nineteen", "tree", "often")


def keyword_recording(root: Path) -> tuple[np.ndarray, list[tuple[str, float, float]], int]:
    """A recording of every test clip's word between other speech (see the docstring): samples, the words' times
    and how many other words it holds."""
    import zlib

    from deepcat.data import spoken_digits
    from deepcat.inputs.audio import read_clip, to_mono_16k

    clips = sorted(clip for word in spoken_digits.WORDS for clip in (root / "test" / word).glob("*.wav"))
    words = [(clip.parent.name, spoken_digits.trimmed(read_clip(clip))) for clip in clips]
    voices = sorted({clip.stem.rsplit("-", 1)[0] for clip in clips})
    others = []
    for word in OTHER_WORDS:
        for voice in voices[:: max(1, len(voices) // 24)]:  # 24 test voices each
            rng = np.random.default_rng(zlib.crc32(f"{voice}/{word}".encode()))
            samples, rate = spoken_digits.espeak(
                voice, word, int(rng.integers(*spoken_digits.SPEEDS)), int(rng.integers(*spoken_digits.PITCHES))
            )
            others.append(spoken_digits.trimmed(to_mono_16k(samples, rate)))
    recording, truth = spoken_digits.keyword_stream(words, others, seed=0)
    return recording, truth, len(others)


def keyword_spotting(run: Path, recording: np.ndarray, truth: list[tuple[str, float, float]], others: int) -> dict:
    """`deepcat listen` with `run`'s model over the recording, scored against the words spoken in it."""
    import deepcat
    from deepcat.inference.listen import Spotting, scored
    from deepcat.inputs.audio import SAMPLE_RATE

    started = time.perf_counter()
    found = deepcat.listen(run, recording, spotting=Spotting())
    seconds = time.perf_counter() - started
    result = scored(found, truth, len(recording) / SAMPLE_RATE)
    return {
        "settings": dataclasses.asdict(Spotting()),
        "digits_spoken": result.words,
        "other_words_spoken": others,
        "recording_minutes": len(recording) / SAMPLE_RATE / 60,
        "detection_rate": result.detection_rate,
        "false_activations": result.false_activations,
        "false_activations_per_hour": result.false_per_hour,
        "median_latency_s": result.median_latency_s,
        "listen_seconds": seconds,
    }


RECIPES = (  # (name, --augment, the pieces of audio_augment.ACOUSTIC that `strong` applies)
    ("default (augment strong: every piece)", "auto", None),
    ("augment light", "light", ()),
    ("light + speed", "strong", ("speed",)),
    ("light + rooms", "strong", ("reverb",)),
    ("light + telephone and 8 kHz lines", "strong", ("band",)),
    ("light + microphones", "strong", ("colour",)),
)


def deepcat_row(
    name, augment, pieces, tmp, splits, test, y_test, hard, data="spoken-digits", seed=0
) -> tuple[Path, dict]:
    """`deepcat train spoken-digits --augment AUGMENT --seed SEED` (with only `pieces` of the strong ones), scored
    on the clean and the degraded test clips."""
    import deepcat
    from deepcat.inputs import audio_augment

    everything = audio_augment.ACOUSTIC
    audio_augment.ACOUSTIC = everything if pieces is None else pieces  # read by `acoustic` at each batch
    try:
        started = time.perf_counter()
        run = deepcat.train(
            data=data,
            output=tmp,
            name=f"{data}{augment}{'-'.join(pieces or ())}-seed{seed}",
            augment=augment,
            seed=seed,
            progress=False,
        )
        finished = time.perf_counter() - started
    finally:
        audio_augment.ACOUSTIC = everything
    epochs = list(csv.DictReader((run / "metrics.csv").open()))
    classifier = deepcat.load(run)

    def accuracy(clips: np.ndarray) -> float:
        answers = classifier.predict(list(clips), top_k=1, reject=False, batch_size=64)
        return float(np.mean([a.label == splits.classes[y] for a, y in zip(answers, y_test)]))

    return run, {
        "method": f"deepcat train {data} (DS-CNN, {len(epochs)} epochs): {name}",
        "train clips": len(splits.train),
        "test clips": len(y_test),
        "test accuracy (unheard voices)": accuracy(test),
        DEGRADED: accuracy(hard),
        "training s": sum(float(e["seconds"]) for e in epochs),
        "finished run s": finished,
    }


def homophones(run: Path) -> dict[str, float]:
    """For each homophone of a digit the run knows, the share of test voices' renditions that the run's model
    answers with that digit (its label after the `unknown` rule, as `listen` would report it)."""
    import zlib

    import soundfile as sf

    import deepcat
    from deepcat.data import other_speech, spoken_digits
    from deepcat.inputs.audio import SAMPLE_RATE, fit_length

    model = deepcat.load(run)
    voices = [f"{accent}+{variant}" for accent in spoken_digits.ACCENTS for variant in spoken_digits.TEST_VARIANTS]
    shares = {}
    with tempfile.TemporaryDirectory() as tmp:
        for digit, same in other_speech.HOMOPHONES.items():
            if digit not in model.classes:
                continue
            for word in same:
                clips = []
                for voice in voices:
                    rng = np.random.default_rng(zlib.crc32(f"{voice}/{word}".encode()))
                    clips.append(str(Path(tmp) / f"{word}-{voice}.wav"))
                    sf.write(clips[-1], fit_length(spoken_digits.spoken(voice, word, rng), SAMPLE_RATE), SAMPLE_RATE)
                answers = model.predict(clips)
                shares[f"{word} as {digit}"] = sum(a.label == digit for a in answers) / len(answers)
    return shares


def seeds_main(seeds: int, out: str) -> None:
    """The default recipe against `light` and the MFCC baselines, each trained with seeds 0 to `seeds` - 1 (the
    seed also draws the validation voices, so each seed's training clips differ; every method of a seed trains on
    the same ones), interleaved seed by seed: clean, degraded and points lost, and how many seeds meet the aim."""
    from deepcat.data import spoken_digits
    from deepcat.data.builtin import default_root
    from deepcat.data.resolve import resolve_data

    spoken_digits.generate(default_root(None) / "spoken-digits")
    test, y_test = load_clips(resolve_data("spoken-digits").test)
    hard = degraded(test)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            splits = resolve_data("spoken-digits", seed=seed)
            for name, augment, pieces in RECIPES[:2]:
                rows.append(deepcat_row(name, augment, pieces, tmp, splits, test, y_test, hard, seed=seed)[1])
            rows += baselines(splits, hard)
            for row in rows[-4:]:
                row["seed"] = seed
                row["points lost"] = points_lost(row)
    summary = []
    for method in dict.fromkeys(r["method"].split(" (C=")[0] for r in rows):
        mine = [r for r in rows if r["method"].split(" (C=")[0] == method]
        triple = {}
        for key in ("test accuracy (unheard voices)", DEGRADED, "points lost"):
            values = [r[key] for r in mine]
            triple[key] = [statistics.median(values), min(values), max(values)]
        within = sum(r["points lost"] <= AIM_POINTS_LOST for r in mine)
        summary.append({"method": method, **triple, f"seeds within {AIM_POINTS_LOST} points": within})
    report(
        "sound",
        rows,
        out,
        hide=("finished run s",),
        seeds=seeds,
        aim_points_lost=AIM_POINTS_LOST,
        summary_median_min_max=summary,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="default: results/sound.json (with --seeds: sound_seeds.json)")
    parser.add_argument(
        "--seeds", type=int, default=0, help="instead: the default recipe, light and the baselines over N seeds"
    )
    parser.add_argument(
        "--homophones", default=None, metavar="RUN", help="instead: how often RUN hears a digit in its homophones"
    )
    args = parser.parse_args()
    if args.homophones:
        for pair, share in homophones(Path(args.homophones)).items():
            print(f"{pair}: {share:.0%}")
        return
    if args.seeds:
        seeds_main(args.seeds, args.out or str(Path(__file__).parent / "results" / "sound_seeds.json"))
        return
    args.out = args.out or str(Path(__file__).parent / "results" / "sound.json")

    import deepcat
    from deepcat.data import spoken_digits
    from deepcat.data.builtin import default_root
    from deepcat.data.resolve import resolve_data
    from deepcat.inference.exported import load_exported

    root = spoken_digits.generate(default_root(None) / "spoken-digits")
    splits = resolve_data("spoken-digits")  # the same training clips for every method; val: deepcat's only
    words = splits.classes
    test, y_test = load_clips(splits.test)
    hard = degraded(test)
    rows = [*baselines(splits, hard), pocketsphinx_row(test, y_test, words, hard)]
    with tempfile.TemporaryDirectory() as tmp:
        run = None
        for name, augment, pieces in RECIPES:
            trained, row = deepcat_row(name, augment, pieces, tmp, splits, test, y_test, hard)
            rows.insert(len([r for r in rows if r["method"].startswith("deepcat")]), row)
            run = run or trained  # the default recipe's run: parity, int8, keyword spotting
        clips = list(splits.test.items)
        fp32 = deepcat.export(run, format="onnx", progress=False)
        torch_side = deepcat.load(run).predict(clips, top_k=len(words))
        onnx_side = load_exported(fp32.path).predict(clips, top_k=len(words))
        parity = max(abs(a[1] - b[1]) for p, q in zip(torch_side, onnx_side) for a, b in zip(p.top, q.top))
        try:
            int8 = deepcat.export(run, format="onnx-int8", progress=False).to_dict()["check"]
        except deepcat.DeepcatError as refused:
            int8 = {"refused": str(refused)}
        recording = keyword_recording(root)
        spotting = keyword_spotting(run, *recording)
        commands_splits = resolve_data("spoken-commands")
        commands_test, commands_y = load_clips(commands_splits.test)
        commands_run, commands_row = deepcat_row(
            "default",
            "auto",
            None,
            tmp,
            commands_splits,
            commands_test,
            commands_y,
            degraded(commands_test),
            data="spoken-commands",
        )
        spotting_commands = {**keyword_spotting(commands_run, *recording), "model": commands_row}
        epochs = list(csv.DictReader((run / "metrics.csv").open()))
    for row in rows:
        row["points lost"] = points_lost(row)
    report(
        "sound",
        rows,
        args.out,
        degraded_rooms_rt60_s=list(DEGRADED_ROOMS),
        onnx_fp32_max_abs_diff_test_clips=parity,
        onnx_fp32_test_clips=len(clips),
        onnx_int8_check=int8,
        keyword_spotting=spotting,
        keyword_spotting_with_non_word_classes=spotting_commands,
        epochs=[{k: float(v) for k, v in e.items() if v} for e in epochs],
    )
    print(f"ONNX fp32 vs PyTorch on {len(clips)} test clips: max |diff| of probabilities {parity:.2e}")
    print(f"int8: {int8}")
    print(f"keyword spotting: {spotting}")
    print(f"keyword spotting, spoken-commands: {spotting_commands}")


if __name__ == "__main__":
    main()
