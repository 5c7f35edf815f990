"""Sound through the whole pipeline on real speech (espeak-ng's voices, as `spoken-digits` is made): train,
evaluate, predict, export with per-clip parity, serve, the audit's sound checks, and the Speech Commands layout."""

import io
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import assert_deployed_threshold_holds, chrome, needs_browser

import deepcat
from deepcat.inputs.audio import SAMPLE_RATE, read_clip

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs Debian's espeak-ng (.ci/run installs it)"
)
WORDS = ("zero", "six", "nine")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """Three words in three accents: six training voices and two test voices that training never hears."""
    from deepcat.data import spoken_digits

    return spoken_digits.generate(
        tmp_path_factory.mktemp("speech"),
        words=WORDS,
        accents=("en-us", "en-gb", "en-029"),
        train_variants=("m1", "m3", "f1", "f2", "klatt", "adam"),
        test_variants=("m7", "f5"),
        test_accents=(),
        not_words=(),
        progress=False,
    )


@pytest.fixture(scope="module")
def speech_run(speech, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    # `strong` for 30 epochs (sound's default: 60): 12 epochs of `light` heard 19 of the 36 test words in a recording
    return deepcat.train(data=str(speech), output=str(out), name="speech", batch_size=8, epochs=30, progress=False)


@needs_espeak
@pytest.mark.slow
def test_a_folder_of_clips_trains_evaluates_and_reports_as_sound(speech_run):
    import json

    meta = json.loads((speech_run / "model.json").read_text())
    assert meta["input_kind"] == "audio" and meta["model"]["name"] == "dscnn"
    assert meta["preprocess"] == {
        "sample_rate": 16000,
        "clip_seconds": 1.0,
        "n_mels": 40,
        "window_ms": 25.0,
        "hop_ms": 10.0,
        "log_floor": 1e-6,
        "mean_normalise": True,
    }
    test = json.loads((speech_run / "test_metrics.json").read_text())
    assert test["images"] == 36 and test["accuracy"] > 0.6  # voices never heard in training
    report = (speech_run / "report.html").read_text()
    assert "1 s clips at 16 kHz, 40-band log-mel input" in report and "sound clips" in report
    # judged as a keyword spotter too: the test clips' words strung into one recording, `deepcat listen` over it
    spotting = json.loads((speech_run / "spotting.json").read_text())
    assert spotting["keywords_spoken"] == 36 and spotting["detection_rate"] >= 0.5, spotting
    assert "Keyword spotting" in report and f"{spotting['detection_rate']:.1%}" in report


@needs_espeak
@pytest.mark.slow
def test_onnx_agrees_with_pytorch_on_every_test_clip(speech_run, speech):
    from deepcat.inference.exported import load_exported

    fp32 = deepcat.export(speech_run, format="onnx", progress=False)
    clips = sorted(str(p) for p in (speech / "test").rglob("*.wav"))
    torch_side = deepcat.load(speech_run).predict(clips, top_k=3)
    onnx_side = load_exported(fp32.path).predict(clips, top_k=3)
    diff = max(abs(a[1] - b[1]) for p, q in zip(torch_side, onnx_side) for a, b in zip(p.top, q.top))
    assert diff < 1e-4 and [p.label for p in torch_side] == [p.label for p in onnx_side]
    try:  # int8 passes the same check as images, or is refused
        check = deepcat.export(speech_run, format="onnx-int8", progress=False).check
        assert check.accuracy_ratio >= 0.99 and check.top1_agreement >= 0.97
    except deepcat.DeepcatError as refused:
        assert "disagrees with PyTorch beyond its bounds" in str(refused)


@needs_espeak
@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt,runtime",
    [("openvino", "openvino"), ("executorch", "executorch.runtime"), ("litert", "ai_edge_litert.interpreter")],
)
def test_the_log_mel_front_end_converts_to_every_runtime(speech_run, speech, fmt, runtime):
    pytest.importorskip(runtime)  # optional extras; the test extra installs them
    exported = deepcat.export(speech_run, format=fmt, progress=False)
    assert exported.check.passed and exported.check.max_abs_diff <= 1e-4
    clips = sorted(str(p) for p in (speech / "test").rglob("*.wav"))
    torch_side = deepcat.load(speech_run).predict(clips, top_k=1)
    assert [p.label for p in deepcat.load(exported.path).predict(clips, top_k=1)] == [p.label for p in torch_side]


@needs_espeak
@pytest.mark.slow
@pytest.mark.precision
def test_the_exported_sound_model_accepts_what_its_threshold_promises(speech_run):
    assert_deployed_threshold_holds(speech_run)


@needs_espeak
@pytest.mark.slow
def test_predict_a_clip_from_the_cli_and_the_api(speech_run, speech):
    clip = next((speech / "train" / "six").glob("en-us+m1-*.wav"))
    assert deepcat.load(speech_run).predict([clip])[0].label == "six"
    samples = read_clip(clip)
    assert deepcat.load(speech_run).predict([samples])[0].label == "six"  # an in-memory array
    shown = subprocess.run(
        [sys.executable, "-m", "deepcat", "predict", str(speech_run), str(clip)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "six" in shown


@needs_espeak
@pytest.mark.slow
def test_the_server_answers_audio_and_refuses_bad_audio(speech_run, speech):
    from conftest import Server

    from deepcat.serving.app import create_app

    model = deepcat.export(speech_run, format="onnx", progress=False).path
    clip = next((speech / "train" / "nine").glob("en-gb+f1-*.wav"))
    flac = io.BytesIO()
    sf.write(flac, sf.read(clip)[0], SAMPLE_RATE, format="FLAC")
    long_clip = io.BytesIO()
    sf.write(long_clip, np.zeros(61 * 8000, np.float32), 8000, format="WAV")
    with Server(create_app(model)) as url:
        raw = httpx.post(f"{url}/v1/predict", content=clip.read_bytes(), headers={"content-type": "audio/wav"})
        assert raw.status_code == 200 and raw.json()["label"] == "nine"
        multipart = httpx.post(f"{url}/v1/predict", files={"file": ("c.flac", flac.getvalue(), "audio/flac")})
        assert multipart.json()["label"] == "nine"
        for body, media, status in (
            (b"not a sound", "audio/wav", 415),
            (long_clip.getvalue(), "audio/wav", 413),
            (clip.read_bytes(), "image/png", 415),
        ):
            refused = httpx.post(f"{url}/v1/predict", content=body, headers={"content-type": media})
            assert refused.status_code == status, refused.text
        assert httpx.get(f"{url}/v1/model").json()["input"]["samples"] == SAMPLE_RATE


def write_clip(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, rate, **kw)
    return path


def tone(freq: float, seconds: float = 1.0, rate: int = SAMPLE_RATE, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_the_speech_commands_layout_makes_its_splits_and_mixes_its_noise(tmp_path):
    import torch

    from deepcat.data.clip_batches import ClipBatches
    from deepcat.data.order import Order
    from deepcat.data.resolve import resolve_data
    from deepcat.inputs.audio import AudioPreprocess

    root = tmp_path / "speech_commands"
    for word, freq in (("yes", 300.0), ("no", 1200.0)):
        for speaker in range(5):
            write_clip(root / word / f"{speaker:08x}_nohash_0.wav", tone(freq * (1 + speaker / 50)))
    write_clip(
        root / "_background_noise_" / "white_noise.wav",
        np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32),
    )
    (root / "validation_list.txt").write_text("yes/00000001_nohash_0.wav\nno/00000001_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/00000002_nohash_0.wav\nno/00000002_nohash_0.wav\n")
    (root / "README.md").write_text("not a clip")
    splits = resolve_data(str(root))
    assert splits.input_kind == "audio" and sorted(splits.classes) == ["no", "yes"]  # the noise is no class
    assert (len(splits.train), len(splits.val), len(splits.test)) == (6, 2, 2)
    assert all("00000002" in Path(p).name for p in splits.test.items)
    assert [Path(p).name for p in splits.noise] == ["white_noise.wav"]
    pre = AudioPreprocess()
    quiet = ClipBatches(splits.train, pre, Order(6), progress=False)
    noisy = ClipBatches(splits.train, pre, Order(6), augment="light", noise_files=splits.noise, progress=False)
    assert len(noisy.noise) == 1
    torch.manual_seed(0)
    assert not torch.allclose(next(iter(quiet))[0], next(iter(noisy))[0])
    missing = root / "testing_list.txt"
    missing.write_text("yes/gone.wav\n")
    with pytest.raises(deepcat.DeepcatError, match="gone.wav"):
        resolve_data(str(root))


def test_the_audit_finds_what_is_wrong_with_sound(tmp_path):
    from deepcat.data import audit
    from deepcat.data.resolve import resolve_data

    root = tmp_path / "clips"
    for i in range(6):
        write_clip(root / "low" / f"{i}.wav", tone(150 * 1.4**i))
        write_clip(root / "high" / f"{i}.wav", tone(1500 * 1.3**i))
    write_clip(root / "low" / "silent.wav", np.zeros(SAMPLE_RATE, np.float32))
    write_clip(root / "high" / "clipped.wav", np.clip(tone(2500, level=3.0), -1, 1))
    write_clip(root / "low" / "long.wav", tone(250, seconds=5.0))
    write_clip(root / "low" / "phone.wav", tone(220, rate=8000), rate=8000)
    write_clip(root / "high" / "copy.flac", sf.read(root / "high" / "0.wav")[0], format="FLAC")  # same sound
    whole = (root / "low" / "0.wav").read_bytes()
    (root / "low" / "cut.wav").write_bytes(whole[: len(whole) // 2])  # cut short
    (root / "high" / "notes.wav").write_text("not a sound")
    found = audit.audit(resolve_data(str(root)), progress=False)
    unreadable = {Path(u["item"]).name: u["error"] for u in found.unreadable}
    assert set(unreadable) == {"cut.wav", "notes.wav"} and "truncated" in unreadable["cut.wav"]
    named = {key: {Path(n).name for n in names} for key, names in found.flags.items()}
    assert named["silent"] == {"silent.wav"} and named["clipped"] == {"clipped.wav"}
    assert named["too_long"] == {"long.wav"} and named["low_rate"] == {"phone.wav"}
    groups = [{Path(m["item"]).name for m in g["members"]} for g in found.duplicates]
    assert any({"0.wav", "copy.flac"} <= g for g in groups)  # same sound, other bytes
    assert found.sizes["sample_rates"] == {8000: 1, 16000: 16}


@needs_espeak
@needs_browser
@pytest.mark.slow
def test_the_page_spots_a_word_from_the_microphone_in_the_browser(speech_run, speech, tmp_path):
    import time

    from conftest import Server
    from selenium.webdriver.common.by import By

    from deepcat.serving.app import create_app

    model = deepcat.export(speech_run, format="onnx", progress=False).path
    word = sf.read(next((speech / "train" / "six").glob("en-us+m1-*.wav")), dtype="int16")[0]
    silence = np.zeros(SAMPLE_RATE, np.int16)
    microphone = write_clip(
        tmp_path / "microphone.wav", np.concatenate([silence, word, silence]), subtype="PCM_16"
    )  # Chromium plays it in a loop
    flags = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
        "--autoplay-policy=no-user-gesture-required",
    )
    # The page spots keywords as `deepcat listen` does (a window every hop, smoothed, a threshold). The `unknown`
    # gate is off here (it is the image page test's subject): on this 3-word model, trained for seconds, the word
    # replayed through Chromium's fake microphone sometimes scored under the threshold.
    with Server(create_app(model, reject=False)) as url:
        driver = chrome(tmp_path / "profile", flags)
        try:
            driver.get(url)
            deadline = time.time() + 60
            while driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "true":
                assert time.time() < deadline, "the page did not load the model"
                time.sleep(0.2)
            assert driver.find_element(By.ID, "camera").text == "microphone"
            driver.find_element(By.ID, "camera").click()
            while driver.find_element(By.ID, "label").text != "six":
                assert time.time() < deadline, f"the page heard {driver.find_element(By.ID, 'label').text!r}"
                time.sleep(0.2)
            assert driver.find_element(By.ID, "set").text.startswith("heard: six at ")  # a detection, with its time
            assert "in your browser" in driver.find_element(By.ID, "mode").text
        finally:
            driver.quit()


def test_the_kind_of_input_comes_from_the_files_or_from_modality(tmp_path):
    from deepcat.data.resolve import resolve_data

    root = tmp_path / "mixed"
    for word, freq in (("low", 200.0), ("high", 3000.0)):
        for i in range(3):
            write_clip(root / word / f"{i}.wav", tone(freq + 10 * i))
    (root / "low" / "cover.png").write_bytes(b"\x89PNG")  # a stray picture does not make it images
    assert resolve_data(str(root)).input_kind == "audio"
    with pytest.raises(deepcat.DeepcatError, match="has no images"):
        resolve_data(str(root), modality="image")
    with pytest.raises(deepcat.DeepcatError, match="clip_seconds"):
        deepcat.train(data=str(root), clip_seconds=0, progress=False)


@needs_espeak
def test_sound_trains_longer_with_strong_augmentation_by_default(speech):
    from deepcat.config import resolve_config
    from deepcat.data.resolve import resolve_data
    from deepcat.training.recipe import resolve_auto

    auto = resolve_auto(resolve_config(data=str(speech)), resolve_data(str(speech)))
    assert (auto.model, auto.augment, auto.epochs) == ("dscnn", "strong", 60)  # speeds, rooms, lines, microphones


def test_a_timm_model_reads_the_spectrogram_as_a_one_channel_image():
    import torch

    from deepcat.models.create import ModelSpec, build, create_model

    model, spec = create_model(name="resnet18", num_classes=3, image_size=224, in_chans=1)
    assert spec.kwargs == {"in_chans": 1}  # saved in model.json: rebuilds the same
    spectrogram = torch.randn(2, 1, 40, 101)
    assert model.eval()(spectrogram).shape == (2, 3)
    assert build(ModelSpec(**{**spec.__dict__}), image_size=0).eval()(spectrogram).shape == (2, 3)


@needs_espeak
@pytest.mark.slow
def test_tune_on_sound_searches_the_sound_recipe(speech, tmp_path, monkeypatch):
    """The default space follows the model `auto` picks for the kind: the DS-CNN's width, not photo bodies."""
    import csv

    monkeypatch.chdir(tmp_path)
    result = deepcat.tune(str(speech), trials=1, epochs=1, batch_size=8, audit=False, progress=False)
    [row] = list(csv.DictReader((tmp_path / result.folder / "trials.csv").open()))
    searched = {key.removeprefix("params_") for key in row if key.startswith("params_")}
    assert {"lr", "augment", "model_width"} <= searched
    assert not searched & {"model", "freeze_epochs", "unfreeze"}  # the photo space's keys
    assert row["params_augment"] in ("light", "strong") and int(row["params_model_width"]) in (32, 64, 96)
    trial = yaml.safe_load((tmp_path / result.best_run / "config.yaml").read_text())
    assert trial["model"] == "dscnn" and trial["model_width"] == int(row["params_model_width"])


@needs_espeak
@pytest.mark.slow
def test_listen_hears_the_keywords_of_a_long_recording(speech_run, speech, tmp_path):
    """`deepcat listen` over a recording of the unheard test voices' words between pauses and other speech
    (words the model was not trained on), under noise: most words reported in time, few false activations; the
    run's ONNX export hears the same."""
    import json

    from deepcat.data import spoken_digits
    from deepcat.inference.listen import Detection, Spotting, listen_stream, scored
    from deepcat.inputs.audio import to_mono_16k

    clips = sorted((speech / "test").rglob("*.wav"))
    words = [(clip.parent.name, spoken_digits.trimmed(read_clip(clip))) for clip in clips]
    others = [
        spoken_digits.trimmed(to_mono_16k(*spoken_digits.espeak("en-us+m7", word, 160, 50)))
        for word in ("hello", "seven", "water", "table", "yesterday", "four")
    ]
    recording, truth = spoken_digits.keyword_stream(words, others, seed=0)
    path = tmp_path / "long.wav"
    sf.write(path, recording, SAMPLE_RATE)
    listen = [sys.executable, "-m", "deepcat", "listen", str(speech_run), str(path), "--json", "--quiet"]
    printed = subprocess.run(listen, capture_output=True, text=True, check=True).stdout
    found = [Detection(**d) for d in json.loads(printed)]
    result = scored(found, truth, len(recording) / SAMPLE_RATE)
    assert result.words == 36 and result.detection_rate >= 0.6, result  # 27 of 36 here
    assert result.false_activations <= 6, result  # none here, in 93 s with six other words spoken
    assert all(-1.0 <= late <= 1.0 for late in result.latencies_s), result  # reported as the word ends
    exported = deepcat.export(speech_run, format="onnx", progress=False).path
    assert [(d.label, d.seconds) for d in deepcat.listen(exported, path)] == [(d.label, d.seconds) for d in found]
    # the microphone's path: the same recording arriving in blocks of uneven size gives the same detections
    blocks = np.array_split(recording, len(recording) // 1_000)
    streamed = listen_stream(deepcat.load(speech_run), blocks, Spotting())
    assert [(d.label, d.seconds) for d in streamed] == [(d.label, d.seconds) for d in found]


@needs_espeak
@pytest.mark.slow
def test_two_torchrun_processes_share_the_decoding_and_learn_as_one(speech, tmp_path):
    """DDP on sound's whole-batch path: each of two processes decodes half of the clips and they exchange them;
    the run learns as one process does (a clip paired with another's label would leave it near chance, 33%).
    Not the same weights: DS-CNN's batch norm keeps statistics per process by design."""
    import json
    import os
    import socket

    args = [
        str(speech),
        "--batch-size",
        "16",
        "--epochs",
        "30",
        "--no-audit",
        "--output",
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "deepcat", "train", *args, "--name", "one"], check=True, env=env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port)]
    two = subprocess.run([*torchrun, "-m", "deepcat", "train", *args, "--name", "two"], env=env, capture_output=True)
    assert two.returncode == 0, two.stderr.decode()[-3000:]
    one, both = (json.loads((tmp_path / name / "test_metrics.json").read_text()) for name in ("one", "two"))
    assert both["images"] == one["images"] == 36
    assert one["accuracy"] > 0.6 and both["accuracy"] > 0.6 and abs(one["accuracy"] - both["accuracy"]) <= 0.25
