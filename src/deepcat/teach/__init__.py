"""Teach: from unlabelled photos to a first model in seconds. A frozen ImageNet backbone embeds every input once
(`features.py`, cached on disk beside the data), and a small head is refit on those features after each label
(`quick.py`); `quick_run.py` writes the same quick model as an ordinary run folder (`deepcat train --quick`)."""

__all__: list[str] = []
