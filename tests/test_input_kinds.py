"""The seam for a kind of input, checked the way scikit-learn's `check_estimator` checks an estimator: a toy kind
defined in this file alone (1-D sensor signals saved as .npy files) is registered, then trained, evaluated,
calibrated, exported to ONNX with its check, predicted from PyTorch and ONNX Runtime, and served over HTTP, with no
change anywhere in src/. Every registered kind, the built-in ones included, meets the same contract: the public
kit `deepcat.testing.check_input_kind`, which a kind written outside deepcat runs too."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn as nn

import deepcat
from deepcat.inputs import INPUT_KINDS, BadInput, Facts, InputKind, ModelChoice, Words, input_kind
from deepcat.models.registry import register_model
from deepcat.testing import ContractError, check_input_kind, check_model_builder

# ---- the toy kind: everything deepcat needs to know about 1-D sensor signals ----------------------------------


@dataclass(frozen=True)
class SensorPreprocess:
    kind: ClassVar[str] = "sensor"
    length: int = 64  # samples the network sees: shorter signals are padded, longer ones centre-cropped

    def to_dict(self) -> dict[str, Any]:
        return {"length": self.length}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SensorPreprocess:
        return cls(length=int(values.get("length", 64)))

    def describe(self) -> str:
        return f"{self.length}-sample signals"


def fit(signal: np.ndarray, length: int) -> np.ndarray:
    """Centre-crop or zero-pad to `length` samples, float32."""
    signal = np.asarray(signal, np.float32).ravel()
    if len(signal) >= length:
        start = (len(signal) - length) // 2
        return signal[start : start + length]
    return np.pad(signal, (0, length - len(signal)))


def read(path: str | Path, min_side: int | None = None) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False).astype(np.float32).ravel()
    except (OSError, ValueError) as e:
        raise BadInput(f"{path}: not a readable .npy signal ({e})") from e


def decode_bytes(data: bytes, name: str, limit: int, pre: SensorPreprocess) -> np.ndarray:
    try:
        signal = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise BadInput(f"{name}: not a .npy signal ({e})", status=415, reason="unsupported_media") from e
    if signal.size > limit:
        raise BadInput(f"{name}: {signal.size} samples is over the limit of {limit}", status=413, reason="too_large")
    return signal.astype(np.float32).ravel()


class Unflatten(nn.Module):
    """The graph's front end: (B, L) raw samples -> (B, 1, 1, L), a one-row picture for a 2-D network."""

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return raw[:, None, None, :]


def eval_transform(pre: SensorPreprocess) -> Any:
    return lambda signal: torch.from_numpy(fit(signal, pre.length)).view(1, 1, -1)  # (1, 1, L)


def train_transform(pre: SensorPreprocess, splits: Any, *, augment: str, hflip: bool) -> Any:
    def shifted(signal: np.ndarray) -> torch.Tensor:
        x = fit(signal, pre.length)
        if augment != "none":
            x = np.roll(x, np.random.randint(-4, 5))
        return torch.from_numpy(np.ascontiguousarray(x)).view(1, 1, -1)

    return shifted


def picture(x: Any, pre: SensorPreprocess) -> np.ndarray:
    """The network's input (1, 1, L) drawn as a 32-row trace, (32, L, 3) uint8."""
    values = np.asarray(x, np.float32).ravel()
    rows = np.clip(((1 - (values - values.min()) / max(float(np.ptp(values)), 1e-6)) * 31).astype(int), 0, 31)
    image = np.full((32, len(values), 3), 255, np.uint8)
    image[rows, np.arange(len(values))] = 0
    return image


def facts(signal: np.ndarray) -> Facts:
    coarse = fit(signal, 64)
    scaled = np.clip((coarse - coarse.min()) / max(float(np.ptp(coarse)), 1e-6) * 255, 0, 255).astype(np.uint8)
    bits = (coarse > np.median(coarse)).astype(np.uint64)
    return Facts(
        content=hashlib.sha1(signal.tobytes()).hexdigest(),
        fingerprint=int((bits << np.arange(64, dtype=np.uint64)).sum()),
        thumb=scaled.tobytes(),
        traits={"samples": int(signal.size)},
    )


def inspect_file(path: str) -> Facts:
    try:
        return facts(read(path))
    except BadInput as e:
        return Facts(error=str(e))


def flags(found: list[Facts], names: list[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    lengths = [f.traits["samples"] for f in found if f.error is None]
    return {"summary": f"{min(lengths)}-{max(lengths)} samples" if lengths else ""}, {}


SENSOR = InputKind(
    name="sensor",
    suffixes=frozenset({".npy"}),
    media_types=("application/x-npy",),
    read=read,
    from_memory=lambda item: np.asarray(item, np.float32).ravel(),
    decode_bytes=decode_bytes,
    preprocess=SensorPreprocess.from_dict,
    to_model_input=lambda signal, pre: fit(signal, pre.length),
    eval_transform=eval_transform,
    train_transform=train_transform,
    front_end=lambda pre: Unflatten(),
    picture=picture,
    show=lambda signal: picture(fit(signal, 64), SensorPreprocess()),
    example=lambda pre, batch: torch.randn(batch, pre.length),
    input_spec=lambda pre: {"name": "signal", "layout": "NT", "dtype": "float32", "samples": pre.length},
    inspect_file=inspect_file,
    inspect_array=facts,
    flags=flags,
    flag_labels={},
    native_size=lambda paths: None,
    default_limit=1_000_000,
    words=Words(noun="signal", plural="signals", sizes="lengths", picture="signal", source="same sensor and mounting"),
    default_preprocess=lambda hints: SensorPreprocess(),
    auto_model=lambda splits: ModelChoice("sensor1d", "the toy kind's only model"),
    sized=False,
    mirrorable=False,
    channels=1,
)


class Sensor1d(nn.Module):
    """A tiny CNN over (B, 1, 1, L): two (1 x 5) convolutions, average pooling, a linear head."""

    def __init__(self, num_classes: int, in_chans: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, 16, (1, 5), padding=(0, 2)),
            nn.ReLU(),
            nn.Conv2d(16, 16, (1, 5), padding=(0, 2)),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def sensor_kind():
    """The toy kind and its model, registered for this module's tests and taken out again afterwards."""
    INPUT_KINDS.add("sensor", SENSOR)
    register_model("sensor1d")(lambda num_classes, image_size, in_chans=1, **_: Sensor1d(num_classes, in_chans))
    yield SENSOR
    from deepcat.models.registry import MODELS

    INPUT_KINDS._entries.pop("sensor")
    MODELS._entries.pop("sensor1d")


def write_signals(root: Path, per_class: int = 40) -> Path:
    """Three classes of noisy sines (2, 5 and 9 cycles over 64-96 samples), one folder each."""
    rng = np.random.default_rng(0)
    for name, cycles in (("slow", 2), ("mid", 5), ("fast", 9)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            length = int(rng.integers(64, 97))
            t = np.arange(length) / length
            signal = np.sin(2 * np.pi * cycles * t + rng.uniform(0, 2 * np.pi)) + 0.2 * rng.standard_normal(length)
            np.save(root / name / f"{i:03d}.npy", signal.astype(np.float32))
    return root


# ---- the contract every kind meets: deepcat.testing's kit, which a kind written elsewhere runs too ---------------


ITEMS = {
    "image": np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8),
    "audio": (0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)).astype(np.float32),
    "sensor": np.sin(np.arange(80) / 8).astype(np.float32),
}


def test_every_registered_kind_is_held_to_the_contract(sensor_kind):
    assert set(INPUT_KINDS.names()) <= set(ITEMS), "a registered kind with no item for the kit below"


@pytest.mark.parametrize("name", list(ITEMS))
def test_every_kind_meets_the_contract(name, sensor_kind):
    check_input_kind(input_kind(name), item=ITEMS[name])


def test_the_toy_kinds_model_meets_the_builders_contract(sensor_kind):
    model = check_model_builder("sensor1d", kind="sensor", num_classes=3)
    assert isinstance(model, Sensor1d)


def test_a_kind_that_breaks_the_contract_is_named_with_what_was_received(sensor_kind):
    from dataclasses import replace

    unlike_training = replace(SENSOR, to_model_input=lambda signal, pre: fit(signal, pre.length) * 2)
    with pytest.raises(ContractError, match=r"input kind 'sensor': max \|front_end.*received .*expected at most"):
        check_input_kind(unlike_training, item=ITEMS["sensor"])


@pytest.mark.slow
def test_a_kind_defined_in_a_test_trains_evaluates_exports_predicts_and_serves(sensor_kind, tmp_path):
    from fastapi.testclient import TestClient

    from deepcat.inference.exported import load_exported
    from deepcat.serving.app import create_app

    data = write_signals(tmp_path / "signals")
    run = deepcat.train(data=str(data), output=str(tmp_path / "runs"), name="sensor", epochs=8, progress=False)
    meta = json.loads((run / "model.json").read_text())
    assert meta["input_kind"] == "sensor" and meta["model"]["name"] == "sensor1d"
    assert meta["preprocess"] == {"length": 64} and meta["calibration"]["threshold"] is not None
    audit = json.loads((run / "audit.json").read_text())
    assert audit["input_kind"] == "sensor" and audit["images"] == 120
    assert "signals" in (run / "report.html").read_text()

    evaluation = deepcat.evaluate(run, progress=False)
    assert evaluation.accuracy > 0.8

    exported = deepcat.export(run, format="onnx", progress=False)
    assert exported.check.passed and exported.check.max_abs_diff <= 1e-4
    files = sorted(data.glob("*/00[0-4].npy"))
    truth = [f.parent.name for f in files]
    from_torch = [p.label for p in deepcat.load(run).predict(files, reject=False)]
    onnx = load_exported(exported.path)
    from_onnx = [p.label for p in onnx.predict(files, reject=False)]
    assert from_torch == from_onnx and np.mean([a == b for a, b in zip(from_torch, truth)]) > 0.8

    with TestClient(create_app(exported.path, reject=False)) as client:
        answer = client.post(
            "/v1/predict", content=files[0].read_bytes(), headers={"content-type": "application/x-npy"}
        )
        assert answer.status_code == 200 and answer.json()["label"] == from_onnx[0]
        refused = client.post("/v1/predict", content=b"not numpy", headers={"content-type": "application/x-npy"})
        assert refused.status_code == 415
