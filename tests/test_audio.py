"""Sound clips: every format libsndfile writes is read back as mono 16 kHz, bad files name themselves, and the
log-mel front end puts a pure tone in the mel band of its frequency (and exports to ONNX unchanged)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deepcat.inputs import BadInput
from deepcat.inputs.audio import SAMPLE_RATE, AudioPreprocess, decode_bytes, fit_length, read_clip


def tone(freq: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.mark.parametrize(
    "suffix, fmt, subtype",
    [
        (".wav", "WAV", "PCM_16"),
        (".wav", "WAV", "PCM_U8"),
        (".wav", "WAV", "FLOAT"),
        (".flac", "FLAC", "PCM_16"),
        (".ogg", "OGG", "VORBIS"),
        (".mp3", "MP3", "MPEG_LAYER_III"),
    ],
)
def test_every_format_reads_as_mono_16k(tmp_path, suffix, fmt, subtype):
    path = tmp_path / f"clip{suffix}"
    sf.write(path, tone(440, 0.5, 44_100, channels=2), 44_100, format=fmt, subtype=subtype)  # stereo, 44.1 kHz
    clip = read_clip(path)
    assert clip.dtype == np.float32 and clip.ndim == 1
    assert abs(len(clip) - SAMPLE_RATE // 2) < 0.01 * SAMPLE_RATE  # mp3 and vorbis pad a little
    spectrum = np.abs(np.fft.rfft(clip))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(clip) - 440) < 5  # still a 440 Hz tone


def test_a_truncated_file_and_a_text_file_named_wav_name_themselves(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(300, 1.0, 16_000), 16_000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:30])  # the header cut short
    text = tmp_path / "notes.wav"
    text.write_text("this is not a sound")
    for path in (truncated, text):
        with pytest.raises(BadInput, match=path.name):
            read_clip(path)
    with pytest.raises(BadInput) as refused:
        decode_bytes(text.read_bytes(), "upload", max_seconds=60)
    assert refused.value.status == 415


def test_clips_are_padded_or_cropped_to_the_clip_length():
    assert np.array_equal(fit_length(np.ones(3, np.float32), 7), [0, 0, 1, 1, 1, 0, 0])
    assert np.array_equal(fit_length(np.arange(10, dtype=np.float32), 4), [3, 4, 5, 6])


def test_a_pure_tone_lands_in_its_mel_band():
    import torch

    from deepcat.inputs.audio_tensors import LogMel, hz_to_mel, mel_to_hz

    pre = AudioPreprocess(n_mels=40)
    front = LogMel(pre).eval()
    edges = mel_to_hz(np.linspace(hz_to_mel(0), hz_to_mel(SAMPLE_RATE / 2), pre.n_mels + 2))
    for band in (5, 20, 33):
        freq = float(edges[band + 1])  # the centre of mel band `band`
        burst = fit_length(tone(freq, 0.6, SAMPLE_RATE), SAMPLE_RATE)  # in silence: bands are mean-normalised
        with torch.no_grad():
            mel = front(torch.from_numpy(burst)[None])
        assert mel.shape == (1, 1, pre.n_mels, 101)
        assert int(mel[0, 0, :, 20:80].mean(-1).argmax()) == band


def test_the_front_end_exports_to_onnx_unchanged(tmp_path):
    import onnxruntime as ort
    import torch

    from deepcat.inputs.audio_tensors import LogMel

    front = LogMel(AudioPreprocess()).eval()
    clip = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, SAMPLE_RATE)).astype(np.float32))
    path = Path(tmp_path) / "front.onnx"
    torch.onnx.export(
        front,
        (clip,),
        dynamo=True,
        input_names=["samples"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},),
    ).save(str(path))
    [out] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"samples": clip.numpy()})
    with torch.no_grad():
        assert np.abs(out - front(clip).numpy()).max() < 1e-3


def test_spec_augment_masks_only_while_training():
    import torch

    from deepcat.inputs.audio_tensors import LogMel

    front = LogMel(AudioPreprocess())
    clip = torch.from_numpy(tone(1000, 1.0, SAMPLE_RATE))[None].repeat(4, 1)
    torch.manual_seed(0)
    front.train()
    masked = front(clip)
    front.eval()
    plain = front(clip)
    assert not torch.equal(masked, plain) and (masked == plain).float().mean() > 0.5


@pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="needs Debian's espeak-ng (.ci/run installs it)"
)
def test_spoken_digits_are_generated_deterministically_with_unheard_test_voices_and_accents(tmp_path):
    from deepcat.data import spoken_digits
    from deepcat.data.resolve import resolve_data

    small = dict(
        words=("zero", "one"),
        accents=("en-us", "en-gb"),
        test_accents=("en-gb",),
        train_variants=("m1",),
        test_variants=("f1",),
        progress=False,
    )
    first = spoken_digits.generate(tmp_path / "a", **small)
    second = spoken_digits.generate(tmp_path / "b", **small)
    clips = sorted(p.relative_to(first) for p in first.rglob("*.wav"))
    per_voice = (2 + 1) * spoken_digits.RENDITIONS + spoken_digits.UNKNOWN_RENDITIONS  # words, silence; other speech
    assert len(clips) == 2 * 2 * per_voice  # accents x variants
    assert all((first / c).read_bytes() == (second / c).read_bytes() for c in clips)  # deterministic
    voices = {split: {c.name.rsplit("-", 1)[0] for c in clips if c.parts[0] == split} for split in ("train", "test")}
    assert voices["train"] == {"en-us+m1"}  # the held-out accent and the held-out variant never train
    assert voices["test"] == {"en-us+f1", "en-gb+m1", "en-gb+f1"}
    clip = read_clip(first / "train" / "one" / "en-us+m1-0.wav")
    assert len(clip) == SAMPLE_RATE and np.abs(clip).max() > 0.05  # a word, not silence
    silence = read_clip(first / "train" / "_silence_" / "en-us+m1-0.wav")
    assert np.abs(silence).max() < 0.1  # background alone
    # the built-in names read the same folder: spoken-digits without the non-words, spoken-commands with them
    digits = resolve_data(f"spoken-digits:{first}", val_fraction=0.0)
    commands = resolve_data(f"spoken-commands:{first}", val_fraction=0.0)
    assert digits.classes == ["one", "zero"] and len(digits.test) == 3 * 2 * spoken_digits.RENDITIONS
    assert commands.classes == ["_silence_", "_unknown_", "one", "zero"]
    assert [commands.classes[y] for y in commands.test.labels[:1]] == ["_silence_"]
    assert {digits.classes[y] for y in digits.train.labels} == {"one", "zero"}


def test_each_torchrun_process_decodes_only_its_share_of_the_clips(tmp_path):
    """The whole-batch path under torchrun: process `rank` of `world_size` decodes clips rank, rank +
    world_size, ...; the shares put back in order are every clip (the exchange itself runs in test_sound.py)."""
    from deepcat.data.clip_batches import decode_all, decode_share
    from deepcat.data.sources import Samples

    paths = []
    for i in range(7):
        paths.append(str(tmp_path / f"{i}.wav"))
        sf.write(paths[-1], tone(200 + 100 * i, 0.5, SAMPLE_RATE), SAMPLE_RATE)
    (tmp_path / "3.wav").write_text("not a sound")
    samples = Samples(paths, np.arange(7) % 2)
    opened = []
    decode = samples.decode
    samples.decode = lambda i, kind: opened.append(i) or decode(i, kind)  # type: ignore[method-assign]
    pre = AudioPreprocess()
    shares = [decode_share(samples, pre, rank=rank, world_size=3, progress=False) for rank in range(3)]
    assert opened == [0, 3, 6, 1, 4, 2, 5]  # each clip once, by the process whose share it is
    assert [share[1].tolist() for share in shares] == [[True, False, True], [True, True], [True, True]]
    assert len(shares[0][2]) == 1 and "3.wav" in shares[0][2][0]
    clips, kept, bad = decode_all(samples, pre, progress=False)
    assert kept.tolist() == [0, 1, 2, 4, 5, 6] and len(bad) == 1
    assert np.array_equal(clips[2].numpy(), shares[2][0][0]) and np.array_equal(clips[5].numpy(), shares[0][0][2])


def peak_hz(clip, rate=SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(np.asarray(clip)))
    return float(np.argmax(spectrum) * rate / len(clip))


def test_speed_perturbation_moves_a_tone_by_its_factor():
    import torch

    from deepcat.inputs.audio_augment import speed

    x = torch.from_numpy(np.stack([tone(1000, 1.0, SAMPLE_RATE)] * 2))
    faster, slower = speed(x, torch.tensor([1.1, 0.9]))
    assert abs(peak_hz(faster) - 1100) < 5 and abs(peak_hz(slower) - 900) < 5
    assert float(faster[:500].abs().max()) == 0.0 < float(slower[:500].abs().max())  # faster: its edges are silence


def test_a_telephone_line_and_an_8khz_recording_remove_what_they_cannot_carry():
    import torch

    from deepcat.inputs.audio_augment import band_limit

    both = tone(200, 1.0, SAMPLE_RATE) + tone(1000, 1.0, SAMPLE_RATE) + tone(6000, 1.0, SAMPLE_RATE)
    x = torch.from_numpy(np.stack([both] * 3))
    kept = [
        {f: np.abs(np.fft.rfft(clip.numpy()))[f] > 100 for f in (200, 1000, 6000)}  # 1 s: bin k is k Hz
        for clip in band_limit(x, SAMPLE_RATE, torch.tensor([0, 1, 2]))
    ]
    assert kept == [
        {200: True, 1000: True, 6000: True},  # unchanged
        {200: False, 1000: True, 6000: False},  # telephone: 300-3,400 Hz
        {200: True, 1000: True, 6000: False},  # 8 kHz: nothing above 4 kHz
    ]


def test_a_room_leaves_a_tail_that_lasts_with_its_reverberation_time():
    import torch

    from deepcat.inputs.audio_augment import reverberate

    click = np.zeros(SAMPLE_RATE, np.float32)
    click[1000:1100] = 1.0
    torch.manual_seed(0)
    dry, small, large = reverberate(torch.from_numpy(np.stack([click] * 3)), SAMPLE_RATE, torch.tensor([0, 0.2, 0.8]))
    tail = slice(1100 + SAMPLE_RATE // 10, 1100 + SAMPLE_RATE // 5)  # 100-200 ms after the click
    energy = [float(clip[tail].pow(2).sum()) for clip in (dry, small, large)]
    assert energy[0] < 1e-9 < energy[1] < energy[2]
    assert torch.allclose(dry, torch.from_numpy(click), atol=1e-5)
    assert all(abs(float(c.pow(2).sum()) - 100) < 1 for c in (small, large))  # the clip's energy is kept


def test_a_microphone_colours_the_spectrum_smoothly_and_the_strong_preset_uses_every_piece():
    import torch

    from deepcat.inputs.audio import AudioPreprocess
    from deepcat.inputs.audio_augment import colour
    from deepcat.inputs.audio_tensors import augment_batch

    x = torch.from_numpy(np.stack([tone(150, 1.0, SAMPLE_RATE) + tone(7000, 1.0, SAMPLE_RATE)]))
    tilted = colour(x, SAMPLE_RATE, torch.tensor([[-6.0, -3, 0, 0, 3, 6]]))[0].numpy()
    spectrum, before = np.abs(np.fft.rfft(tilted)), np.abs(np.fft.rfft(x[0].numpy()))
    assert spectrum[150] < before[150] * 0.6 and spectrum[7000] > before[7000] * 1.7  # about -6 dB, about +6 dB
    torch.manual_seed(0)
    light = augment_batch(x.repeat(8, 1), AudioPreprocess(), [], preset="light")
    torch.manual_seed(0)
    strong = augment_batch(x.repeat(8, 1), AudioPreprocess(), [], preset="strong")
    assert light.shape == strong.shape == (8, SAMPLE_RATE) and not torch.allclose(light, strong)
