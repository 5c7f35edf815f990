"""The sound kind, registered as `INPUT_KINDS["audio"]`: `audio.py`'s numpy side (decoding to 16 kHz mono, the
audit's checks, the model's raw input) and `audio_tensors.py`'s torch side (augmentation, the log-mel front end
inside the graph), which loads when one of its members is first called."""

from __future__ import annotations

import functools
from typing import Any, cast

import numpy as np

from deepcat.inputs import INPUT_KINDS, Hints, InputKind, ModelChoice, Words
from deepcat.inputs.audio import (
    AUDIO_SUFFIXES,
    FLAG_LABELS,
    MAX_SECONDS,
    AudioPreprocess,
    decode_bytes,
    flags,
    from_memory,
    input_spec,
    inspect_array,
    inspect_file,
    model_input,
    native_size,
    read_clip,
)

__all__ = ["AUDIO"]


def eval_transform(pre: AudioPreprocess) -> Any:
    from deepcat.inputs.audio_tensors import eval_transform as build

    return build(pre)


def train_transform(pre: AudioPreprocess, splits: Any, *, augment: str, hflip: bool) -> Any:
    from deepcat.inputs.audio_tensors import train_transform as build

    return build(pre, augment=augment, noise_files=splits.noise)


def front_end(pre: AudioPreprocess) -> Any:
    from deepcat.inputs.audio_tensors import LogMel

    return LogMel(pre).eval()


def picture(x: Any, pre: AudioPreprocess) -> np.ndarray:
    """The network's input, a (1, n_mels, frames) log-mel spectrogram, as a picture: low pitches at the bottom,
    magma colours over its own range."""
    from matplotlib import colormaps

    mel = x[0].detach().float().numpy()[::-1]
    scaled = (mel - mel.min()) / max(float(mel.max() - mel.min()), 1e-6)
    return cast("np.ndarray", (colormaps["magma"](scaled)[..., :3] * 255).astype(np.uint8))


@functools.cache
def _default_transform() -> Any:
    return eval_transform(AudioPreprocess())  # built once: its DFT basis is the costly part


def show(samples: np.ndarray) -> np.ndarray:
    """A decoded clip as its picture: the default front end's log-mel spectrogram."""
    return picture(_default_transform()(samples), AudioPreprocess())


def example(pre: AudioPreprocess, batch: int) -> Any:
    import torch

    return torch.randn(batch, pre.samples) * 0.1


def default_preprocess(hints: Hints) -> AudioPreprocess:
    """The clip length and deepcat's log-mel front end, whatever the model."""
    return AudioPreprocess(clip_seconds=hints.clip_seconds)


def keyword_model(splits: Any) -> ModelChoice:
    """`--model auto` for sound: the keyword-spotting DS-CNN on the log-mel spectrogram."""
    return ModelChoice("dscnn", "sound: the keyword-spotting DS-CNN on the log-mel spectrogram, from scratch")


WORDS = Words(
    noun="clip",
    plural="sound clips",
    sizes="durations",
    picture="log-mel spectrogram",
    source="same kind of microphone, speakers, loudness and background",
)

AUDIO = INPUT_KINDS.add(
    "audio",
    InputKind(
        name="audio",
        suffixes=AUDIO_SUFFIXES,
        media_types=("audio/",),
        read=read_clip,
        from_memory=from_memory,
        decode_bytes=decode_bytes,
        preprocess=AudioPreprocess.from_dict,
        to_model_input=model_input,
        eval_transform=eval_transform,
        train_transform=train_transform,
        front_end=front_end,
        picture=picture,
        show=show,
        example=example,
        input_spec=input_spec,
        inspect_file=inspect_file,
        inspect_array=inspect_array,
        flags=flags,
        flag_labels=FLAG_LABELS,
        native_size=native_size,
        default_limit=MAX_SECONDS,
        words=WORDS,
        default_preprocess=default_preprocess,
        auto_model=keyword_model,
        sized=False,  # the clip length and the log-mel front end decide the input
        mirrorable=False,
        default_augment="strong",  # other speeds, rooms, lines and microphones: see benchmarks/sound.py
        # the strong preset's variety needs them: 10 left spoken-digits at 93%, 30 at 98%; from clean to degraded
        # test voices, 60 lose 2.3 points at the median of 3 seeds (each within 3), 30 lost 3.4 (sound.py --seeds 3)
        default_epochs=60,
        size_limit="max_seconds",
        channels=1,
    ),
)
