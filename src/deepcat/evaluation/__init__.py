"""After a model exists: scores, calibration and `unknown`, Grad-CAM, label errors, plots and the report.

`finish.py` is the one place that runs them together (after training, export and `check --labels`).
"""

__all__ = []
