"""Hyper-parameter search (`deepcat tune`): Optuna's TPE over ordinary training runs, with pruning from the
fit loop's per-epoch validation score, on one machine or many (one study in a shared database)."""

__all__ = []
