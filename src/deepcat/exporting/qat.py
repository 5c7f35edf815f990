"""Quantisation-aware fine-tuning: where post-training int8 cannot keep a model's answers, a short fine-tune with
int8 rounding simulated in the forward pass (PyTorch 2 export's QAT flow, torchao's `prepare_qat_pt2e`) moves the
weights to where rounding costs least; each toolchain then quantises the tuned weights as it quantises any.

The fine-tune learns from the model itself, not from labels: the tuned network's int8 forward is taught to give the
fp32 network's probabilities (distillation, KL divergence) and the features its `unknown` score reads (squared error
each over its variance) on training inputs, so what it keeps is what the export check asks of an int8 file: fp32's
answers, and the trust features (with probabilities alone, a digits model's tuned file kept every answer and
answered `unknown` to all). The simulated scheme, per-channel symmetric int8 weights and per-tensor
8-bit activations (torchao's `X86InductorQuantizer`), is the one every deepcat int8 file uses; batch norm keeps its
statistics (its scale is folded into the simulated weights, as the files fold it). The tuned network in float is not
the model any more (it may answer worse than int8 does): only its int8 file is judged, against the model before it.
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from deepcat.exporting.graph import Deployable

__all__ = ["QAT_BATCH", "QAT_LR", "QAT_STEPS", "Tuned", "quantisation_aware"]

QAT_STEPS = 300  # batches of the fine-tune
QAT_BATCH = 32
QAT_LR = 1e-4  # Adam: 3e-4 kept fewer answers on the test's digits model (200x channel), 1e-3 diverged


@dataclass
class Tuned:
    """A network tuned for int8 and what it cost: the distillation loss of the simulated int8 forward at the first
    and the last batch (0: int8 gives fp32's probabilities)."""

    net: Deployable
    seconds: float
    steps: int
    loss_first: float
    loss_last: float

    def summary(self) -> dict[str, float | int]:
        return {"steps": self.steps, "seconds": round(self.seconds, 1), "loss_first": self.loss_first,
                "loss_last": self.loss_last}  # fmt: skip


def quantisation_aware(
    net: Deployable,
    inputs: np.ndarray,
    *,
    steps: int = QAT_STEPS,
    lr: float = QAT_LR,
    seed: int = 0,
    progress: bool = False,
) -> Tuned:
    """A copy of `net` whose network was fine-tuned for `steps` batches of `inputs` (raw training inputs, as the
    file takes them) with fake int8 quantisation, to give `net`'s own probabilities."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    if not len(inputs):
        raise ValueError("quantisation-aware fine-tuning needs training inputs")
    tuned = copy.deepcopy(net)
    teacher, student = net.with_features.eval(), tuned.with_features  # (features, logits); the network inside
    generator = torch.Generator().manual_seed(seed)
    batch = min(QAT_BATCH, len(inputs))

    def draw() -> torch.Tensor:
        chosen = torch.randint(0, len(inputs), (batch,), generator=generator).numpy()
        with torch.no_grad():
            drawn: torch.Tensor = net.front_end(torch.from_numpy(inputs[chosen]))
        return drawn

    # captured in training mode (what the QAT flow rewrites), then batch norm and dropout set to inference: the
    # statistics stay the model's, so a few hundred batches cannot move them
    captured = torch.export.export(student.train(), (draw(),)).module()
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    simulated = prepare_qat_pt2e(captured, quantizer)
    move_exported_model_to_eval(simulated)
    optimizer = torch.optim.Adam(simulated.parameters(), lr=lr)  # the student's own tensors: trained in place
    started, losses = time.perf_counter(), []
    with torch.no_grad():  # each feature's spread, so that each counts alike (as the score's distances weigh them)
        spread = torch.cat([teacher(draw())[0] for _ in range(8)]).var(0) + 1e-6
    for step in range(steps):
        x = draw()
        with torch.no_grad():
            features, logits = teacher(x)
        tuned_features, tuned_logits = simulated(x)
        loss = _distance(tuned_features, tuned_logits, features, logits, spread)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if progress and (step + 1) % 50 == 0:
            print(f"  quantisation-aware fine-tune: batch {step + 1}/{steps}, loss {losses[-1]:.4f}", file=sys.stderr)
    tuned.eval()
    tail = float(np.mean(losses[-10:]))
    return Tuned(tuned, time.perf_counter() - started, steps, losses[0], tail)


def _distance(
    features: torch.Tensor,
    logits: torch.Tensor,
    to_features: torch.Tensor,
    to_logits: torch.Tensor,
    spread: torch.Tensor,
) -> torch.Tensor:
    """How far the int8 forward is from fp32's: KL divergence of the probabilities, plus the features' squared
    error, each over its variance `spread` (none where the score reads no features)."""
    kl = torch.nn.functional.kl_div(
        logits.log_softmax(-1), to_logits.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    if not to_features.shape[1]:
        return kl
    return kl + ((features - to_features).pow(2) / spread).mean()
