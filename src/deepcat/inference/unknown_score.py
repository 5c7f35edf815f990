"""The `unknown` score: how much an input looks like what the model was trained on, computed inside the model
(PyTorch and the exported graph alike) so every runtime rejects the same inputs.

Scores (higher = more like the training data), compared in `benchmarks/open_set.py`:
- `layers` (the default where the model names its stages): relative Mahalanobis distances (Ren et al., 2021:
  the class-conditional distance less the distance to one Gaussian of all training features) of the pooled
  outputs (mean and max over space) of the model's last two stages, each standardised on the training
  features, summed. Held-out classes differ from known ones in mid-level texture and shape more than in the
  penultimate features the classifier has squeezed; the relative distance discounts what every class shares.
  The graph carries, per stage, C means, a mean and two D x D whitening matrices;
- `mahalanobis` (the default for models without named stages): minus the smallest class-conditional
  Mahalanobis distance of the L2-normalised penultimate features, with class means and one shared covariance
  (Lee et al., 2018): C means and a D x D precision matrix;
- `knn`: cosine similarity of the input's L2-normalised features to their nearest neighbour among a bounded
  sample of training features (Sun et al., 2022): best on far inputs (noise, another data set), weaker on
  held-out classes, and the graph carries the sample;
- `energy`: logsumexp of the logits (Liu et al., 2020), the score before the feature scores existed;
- `msp`: the largest softmax probability, the usual baseline.
The features are the classifier's input (the last linear layer), or for `layers` the pooled stage outputs,
captured by `WithFeatures`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

from deepcat.registry import Registry

__all__ = [
    "BANK_FLOATS",
    "DEFAULT_SCORE",
    "FEATURE_SCORES",
    "KNN_K",
    "SCORES",
    "SCORE_KINDS",
    "STATE_FILE",
    "Fit",
    "ScoreKind",
    "UnknownScore",
    "WithFeatures",
    "bank_size",
    "classifier_layer",
    "fit_score",
    "load_score",
    "pooled",
    "relative_distance",
    "save_score",
    "stage_names",
]

DEFAULT_SCORE = "layers"
KNN_K = 1  # the nearest neighbour: k = 1 ranked unknowns better than 10 or 50 on Fashion-MNIST
BANK_FLOATS = 1_000_000  # what the graph carries for `knn`: at most 4 MB of training features
STATE_FILE = "unknown_score.pt"


def classifier_layer(model: nn.Module, *, classes: int | None = None, features: int | None = None) -> nn.Linear | None:
    """The last linear layer with one output per class (or `features` inputs): its input is the penultimate
    feature vector."""
    found = [
        m
        for m in model.modules()
        if isinstance(m, nn.Linear)
        and (classes is None or m.out_features == classes)
        and (features is None or m.in_features == features)
    ]
    return found[-1] if found else None


def stage_names(model: nn.Module) -> list[str]:
    """The modules whose outputs `layers` reads: the last two stages the model names (`ood_stages` on deepcat's
    models, `feature_info` on timm's); none for a model that names no stages."""
    names = getattr(model, "ood_stages", None)
    if names is None and getattr(model, "feature_info", None) is not None:
        try:
            names = [info["module"] for info in cast(Any, model).feature_info][-2:]
        except (TypeError, KeyError):
            names = None
    return list(names or [])


class WithFeatures(nn.Module):
    """model -> (features, logits) in one pass: the classifier layer's input, or with `stages` the outputs of
    those modules, each pooled to its mean and max over space (and averaged over the model's calls, as the
    test-time flip calls the body twice) and concatenated (`sizes` then holds each stage's length).
    A model without a linear classifier layer and no stages gives (B, 0) features: only `energy` and `msp`
    apply to it."""

    def __init__(self, model: nn.Module, head: nn.Linear | None, stages: list[str] | None = None):
        super().__init__()
        self.model, self.head, self.stages = model, head, list(stages or [])
        self.sizes: list[int] = []

    @classmethod
    def for_score(cls, model: nn.Module, unknown: UnknownScore) -> WithFeatures:
        """The tap a score needs: its stages (`layers`), the classifier layer whose input has the score's
        feature length (`knn`, `mahalanobis`), or none (energy, msp)."""
        if unknown.stages:
            return cls(model, None, unknown.stages)
        dim = unknown.feature_dim
        return cls(model, classifier_layer(model, features=dim) if dim else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stages:
            return self._stage_features(x)
        if self.head is None:
            logits = self.model(x).float()
            return logits[:, :0], logits  # (B, 0), the batch axis left symbolic for export
        seen: list[torch.Tensor] = []
        handle = self.head.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        return seen[-1].flatten(1).float(), logits.float()

    def _stage_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen: dict[str, list[torch.Tensor]] = {name: [] for name in self.stages}
        handles = [
            self.model.get_submodule(name).register_forward_hook(
                lambda _, __, out, name=name: seen[name].append(pooled(out))
            )
            for name in self.stages
        ]
        try:
            logits = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        parts = [torch.stack(seen[name]).mean(0) for name in self.stages]
        self.sizes = [p.shape[1] for p in parts]
        return torch.cat(parts, 1).float(), logits.float()


def pooled(out: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 2C): mean and max over space; tokens (B, T, C): over the tokens; (B, C) twice."""
    if out.dtype != torch.float32:  # bf16 under autocast; a no-op cast would stay in an exported graph, where
        out = out.float()  # ExecuTorch's XNNPACK delegate cannot run it between int8 layers
    if out.dim() == 2:
        return torch.cat([out, out], 1)
    axes = (1,) if out.dim() == 3 else tuple(range(2, out.dim()))
    return torch.cat([out.mean(axes), out.amax(axes)], 1)


def bank_size(feature_dim: int) -> int:
    """How many training images' features `knn` keeps: as many as fit in BANK_FLOATS."""
    return max(KNN_K, BANK_FLOATS // max(feature_dim, 1))


class UnknownScore(nn.Module):
    """(features, logits) -> (B,) score, higher = more like the training data."""

    def __init__(self, kind: str, state: dict[str, torch.Tensor] | None = None, stages: list[str] | None = None):
        super().__init__()
        SCORE_KINDS.get(kind)  # an unknown name is an error naming the nearest one
        self.kind, self.stages = kind, list(stages or [])
        for name, value in (state or {}).items():
            self.register_buffer(name, value.float())

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return SCORE_KINDS.get(self.kind).forward(self, features, logits)

    @property
    def feature_dim(self) -> int | None:
        """The length of the classifier-input features the score reads (None: it reads the logits or stages)."""
        state = self.state()
        return next(iter(state.values())).shape[-1] if state and not self.stages else None

    def state(self) -> dict[str, torch.Tensor]:
        return {name: buf for name, buf in self.named_buffers()}


def relative_distance(
    features: torch.Tensor, means: torch.Tensor, whiten: torch.Tensor, centre: torch.Tensor, centre_whiten: torch.Tensor
) -> torch.Tensor:
    """(B, D) -> (B,): the smallest class-conditional Mahalanobis distance less the distance to the Gaussian of
    all training features, on L2-normalised features. Each distance is a sum of squares in a whitened space
    (`whiten`: the Cholesky factor of the precision; `means`, `centre`: already whitened), not x'Px, whose
    terms of both signs cancel: on a trained Fashion-MNIST model, PyTorch and ONNX Runtime then agree to 5e-5 on
    scores that spread over 12."""
    features = nn.functional.normalize(features, dim=-1)
    nearest = ((features @ whiten)[:, None, :] - means[None]).square().sum(-1).amin(-1)  # (B, C) -> (B,)
    return nearest - (features @ centre_whiten - centre).square().sum(-1)


def _whitening(centred: torch.Tensor) -> torch.Tensor:
    """L with L L' = the inverse covariance of centred rows (shrunk a little towards the identity so it always
    inverts): ||x L||^2 is x's Mahalanobis distance."""
    whiten: torch.Tensor = torch.linalg.cholesky(_precision(centred))
    return whiten


def _precision(centred: torch.Tensor) -> torch.Tensor:
    """The inverse covariance of centred rows, shrunk towards the identity so it always inverts: by 1e-3 of the
    mean variance, more where there are fewer than 10 rows per dimension (a few hundred photos against 640
    feature dimensions would otherwise give a near-singular fit that magnifies float noise)."""
    covariance = centred.T @ centred / len(centred)
    eye = torch.eye(len(covariance), dtype=covariance.dtype)
    shrink = 1e-3 * max(1.0, 10 * len(covariance) / len(centred))
    precision: torch.Tensor = torch.linalg.inv(covariance + shrink * covariance.diagonal().mean() * eye)
    return precision


def fit_score(
    kind: str,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    stages: list[str] | None = None,
    sizes: list[int] | None = None,
) -> UnknownScore:
    """The score's state from training features (for `layers`, the stages' `sizes` concatenated), by its kind."""
    score = SCORE_KINDS.get(kind)
    fitted = score.fit(features, labels, seed=seed, sizes=sizes or [])
    return UnknownScore(kind, fitted, stages if score.reads_stages else None)


def save_score(score: UnknownScore, run_dir: Path) -> None:
    torch.save({**score.state(), **({"stages": score.stages} if score.stages else {})}, run_dir / STATE_FILE)


def load_score(kind: str, run_dir: Path) -> UnknownScore:
    path = run_dir / STATE_FILE
    state = torch.load(path, weights_only=True) if SCORE_KINDS.get(kind).reads_features else {}
    stages = state.pop("stages", None)
    return UnknownScore(kind, state, stages)


# The kinds of score, by name: each its fit (training features -> the buffers the graph carries) and its forward.
Fit = Callable[..., dict[str, torch.Tensor]]  # (features, labels, *, seed, sizes) -> state


@dataclass(frozen=True)
class ScoreKind:
    fit: Fit
    forward: Callable[[UnknownScore, torch.Tensor, torch.Tensor], torch.Tensor]  # (score, features, logits) -> (B,)
    reads_features: bool = True  # False: from the logits alone, nothing to fit
    reads_stages: bool = False  # True: the pooled outputs of the model's named stages


SCORE_KINDS: Registry[ScoreKind] = Registry("unknown score")


def _no_state(features: torch.Tensor, labels: torch.Tensor, **_: Any) -> dict[str, torch.Tensor]:
    return {}


def _fit_layers(features: torch.Tensor, labels: torch.Tensor, *, sizes: list[int], **_: Any) -> dict[str, torch.Tensor]:
    """Per stage: class means, the shared and the overall covariance's whitening, the relative distance's
    standardisation."""
    state, start = {}, 0
    classes = torch.unique(labels, sorted=True)
    for i, size in enumerate(sizes):
        part = nn.functional.normalize(features[:, start : start + size].double(), dim=-1)
        start += size
        means = torch.stack([part[labels == c].mean(0) for c in classes])
        centre = part.mean(0)
        whiten = _whitening(part - means[torch.searchsorted(classes, labels)])
        centre_whiten = _whitening(part - centre)
        fitted = {
            "means": means @ whiten,
            "whiten": whiten,
            "centre": centre @ centre_whiten,
            "centre_whiten": centre_whiten,
        }
        relative = torch.cat(
            [-relative_distance(part[j : j + 1024], *fitted.values()) for j in range(0, len(part), 1024)]
        )  # B x C x D floats at a time
        fitted["z"] = torch.stack([relative.mean(), relative.std().clamp_min(1e-6)])
        state.update({f"{name}_{i}": value.float() for name, value in fitted.items()})
    return state


def _layers(score: UnknownScore, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    total: Any = 0
    start = 0
    for i in range(len(score.stages)):
        whiten = getattr(score, f"whiten_{i}")
        part = features[:, start : start + whiten.shape[0]]
        start += whiten.shape[0]
        relative = relative_distance(
            part,
            getattr(score, f"means_{i}"),
            whiten,
            getattr(score, f"centre_{i}"),
            getattr(score, f"centre_whiten_{i}"),
        )
        z = getattr(score, f"z_{i}")
        total = total + (-relative - z[0]) / z[1]
    result: torch.Tensor = total
    return result


def _fit_knn(features: torch.Tensor, labels: torch.Tensor, *, seed: int, **_: Any) -> dict[str, torch.Tensor]:
    """A bounded random sample of training features."""
    rows = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
    return {"bank": nn.functional.normalize(features[rows[: bank_size(features.shape[1])]].float(), dim=-1)}


def _knn(score: UnknownScore, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    bank = score.get_buffer("bank")
    similarity = nn.functional.normalize(features, dim=-1) @ bank.T  # (B, N)
    return similarity.topk(min(KNN_K, len(bank)), dim=-1).values[:, -1]


def _fit_mahalanobis(features: torch.Tensor, labels: torch.Tensor, **_: Any) -> dict[str, torch.Tensor]:
    """Class means and the shared covariance's inverse."""
    features = nn.functional.normalize(features.double(), dim=-1)
    classes = torch.unique(labels, sorted=True)
    means = torch.stack([features[labels == c].mean(0) for c in classes])
    precision = _precision(features - means[torch.searchsorted(classes, labels)])
    return {"means": means.float(), "precision": precision.float()}


def _mahalanobis(score: UnknownScore, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    centred = nn.functional.normalize(features, dim=-1)[:, None, :] - score.get_buffer("means")[None]  # (B, C, D)
    return -((centred @ score.get_buffer("precision")) * centred).sum(-1).amin(-1)  # (B, C) -> (B,)


SCORE_KINDS.add("layers", ScoreKind(_fit_layers, _layers, reads_stages=True))
SCORE_KINDS.add("knn", ScoreKind(_fit_knn, _knn))
SCORE_KINDS.add("mahalanobis", ScoreKind(_fit_mahalanobis, _mahalanobis))
SCORE_KINDS.add("energy", ScoreKind(_no_state, lambda score, features, logits: logits.logsumexp(-1), False))
SCORE_KINDS.add("msp", ScoreKind(_no_state, lambda score, features, logits: logits.softmax(-1).amax(-1), False))
SCORES = tuple(SCORE_KINDS.names())
FEATURE_SCORES = tuple(name for name, kind in SCORE_KINDS.items() if kind.reads_features)
