"""Serving: a FastAPI application over ONNX Runtime, with micro-batching, metrics and a web page."""

__all__ = []
