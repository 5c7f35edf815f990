"""Training: losses, optimiser and schedule, events, distributed set-up and the fit loop."""

__all__ = []
