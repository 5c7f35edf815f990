"""The version of deepcat, in one place: the package, the CLI and every export's metadata read it."""

__all__ = []

__version__ = "0.1.0"
