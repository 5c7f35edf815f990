"""Answers from a model: in PyTorch (`torch_model`) or ONNX Runtime without torch (`exported`), one rule for both
(`answers`)."""

__all__ = []
