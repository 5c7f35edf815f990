"""Prediction with an exported file (ONNX, .ort, OpenVINO IR, ExecuTorch) and its own runtime, without torch.

The model carries its own preprocessing in its metadata (key `deepcat`, JSON) and has
normalisation, temperature and softmax inside the graph (calibrated probabilities, and the
`unknown` score as a second output): a consumer resizes the shorter side to `resize`,
centre-crops `input_size`, and feeds float32 RGB pixels in 0..255, NCHW.
This module is that consumer; the server and `deepcat predict MODEL.onnx` use it. Which runtime opens which
file is `deepcat.inference.runtimes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from deepcat.errors import DeepcatError
from deepcat.inference.answers import InputItem, Prediction, Rule, predict_batches
from deepcat.run_meta import Calibration, Decision, ExportMeta

__all__ = ["ExportedClassifier", "load_exported"]


@dataclass
class ExportedClassifier:
    """A runtime's session (ONNX Runtime's, or one answering the same calls) plus the metadata that says how to
    feed it."""

    session: Any
    meta: ExportMeta
    device: str = "cpu"  # where the session runs: cpu or cuda
    path: Path | None = None  # the file it was opened from (listen cuts an ONNX graph after its front end)

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape (the model's input without its batch axis)."""
        return tuple(int(d) for d in self.session.get_inputs()[0].shape[1:])

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 pixels in 0..255 -> (B, C) probabilities."""
        return self.infer(batch)[0]

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, 3, H, W) float32 pixels in 0..255 -> (B, C) probabilities and (B,) `unknown` scores."""
        outputs = self.session.run(None, {self.session.get_inputs()[0].name: batch})
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(B, K) logits before temperature and softmax (exports since the `logits` output was added)."""
        if self.meta.logits_output is None:
            raise DeepcatError(f"{self.name} was exported before files had a logits output: export the run again")
        [logits] = self.session.run([self.meta.logits_output], {self.session.get_inputs()[0].name: batch})
        return cast("np.ndarray", logits)

    @property
    def calibration(self) -> Calibration:
        """The file's calibration (the defaults for a file without one), as `Classifier.calibration`."""
        return self.meta.calibration_or_default

    @property
    def threshold(self) -> float | None:
        """`unknown` score below which the answer is `unknown` (None: never)."""
        return self.calibration.threshold

    def set_limit(self, coverage: float | None) -> float | None:
        """The prediction sets' limit for `coverage` (None: no sets asked for)."""
        from deepcat.inference.calibrated import set_limit

        if coverage is None:
            return None
        return set_limit(self.calibration.conformal, coverage, DeepcatError)

    def predict(
        self,
        images: InputItem | Sequence[InputItem],
        *,
        top_k: int = 5,
        reject: bool = True,
        coverage: float | None = None,
        batch_size: int = 32,
        progress: bool = False,
        decision: Decision | None = None,
    ) -> Prediction | list[Prediction]:
        """Same answers and shape as `deepcat.load(run).predict`, from ONNX Runtime: one input (a path, an image,
        an array) gets one `Prediction`, a list of them a list. `decision` replaces the file's own (metadata)."""
        single = not isinstance(images, (list, tuple))
        items = [cast(InputItem, images)] if single else list(cast(Sequence[InputItem], images))
        kind, pre = self.meta.kind, self.meta.preprocess
        rule = Rule(
            self.classes,
            top_k,
            self.threshold if reject else None,
            self.set_limit(coverage),
            decision or self.meta.decision,
        )
        results = predict_batches(
            items,
            rule,
            kind=kind,
            prepare=lambda item: kind.to_model_input(item, pre),
            infer=lambda batch: self.infer(np.stack(batch)),
            batch_size=batch_size,
            progress=progress,
        )
        return results[0] if single else results

    def answer(
        self, data: bytes, *, name: str = "body", top_k: int = 5, reject: bool = True, coverage: float | None = None
    ) -> dict[str, Any]:
        """The JSON `deepcat serve` answers for one input's bytes, for embedding the model in another web app;
        raises `BadInput` (with its HTTP status and reason) for bytes that are not a readable input."""
        from deepcat.inference.answers import as_json

        kind, pre = self.meta.kind, self.meta.preprocess
        raw = kind.to_model_input(kind.decode_bytes(data, name, kind.default_limit, pre), pre)
        probs, scores = self.infer(raw[None])
        return {
            "model": self.name,
            "version": self.meta.version,
            **as_json(
                name,
                probs[0],
                None if scores is None else scores[0],
                classes=self.meta.classes,
                top_k=top_k,
                threshold=self.threshold if reject else None,
                set_limit=self.set_limit(coverage),
                decision=self.meta.decision,
            ),
        }


def load_exported(path: str | Path, *, threads: int | None = None, device: str = "cpu") -> ExportedClassifier:
    """Open an exported file (.onnx, .ort, OpenVINO .xml, ExecuTorch .pte) with its runtime, on the CPU or, for
    ONNX files, a CUDA GPU (`device`: cpu, cuda or auto)."""
    from deepcat.inference.runtimes import open_file

    return ExportedClassifier(*open_file(Path(path), threads, device), path=Path(path))
