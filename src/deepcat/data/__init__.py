"""Data: reading images, resolving a DATA argument into splits, transforms and loaders."""

__all__ = []
